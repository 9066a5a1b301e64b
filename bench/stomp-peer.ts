// A bare stompit client for the bench: the producer and listener around the agent, and the raw ceiling.

import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { coalesceStompitWrites } from '../src/messaging/coalesce.js';
import { type StompitClient, stompit } from '../src/messaging/stompit.js';

type Client = StompitClient;

export const STOMP_HOST = process.env.ACTIVEMQ_HOST || '127.0.0.1';

export type BenchBroker = 'artemis' | 'classic';

/**
 * The brokers the broker scenarios run on, in order: FASTMON_BENCH_BROKERS (comma-separated), by
 * default both, Artemis (the testbed's broker) first. The agent and the raw ceiling are measured side
 * by side on each.
 */
export function benchBrokers(): BenchBroker[] {
  const names = (process.env.FASTMON_BENCH_BROKERS ?? 'artemis,classic')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  for (const name of names) {
    if (name !== 'artemis' && name !== 'classic') {
      throw new Error(`FASTMON_BENCH_BROKERS=${names.join(',')}: expected artemis and/or classic`);
    }
  }
  if (names.length === 0) throw new Error('FASTMON_BENCH_BROKERS names no broker');
  return names as BenchBroker[];
}

// The broker in use. A consumer process the bench starts learns it from FASTMON_TEST_BROKER and
// ACTIVEMQ_PORT (agent-process.ts sets both); the bench itself switches with useBroker().
let kind: BenchBroker = process.env.FASTMON_TEST_BROKER === 'classic' ? 'classic' : 'artemis';

export function useBroker(next: BenchBroker): void {
  kind = next;
}

export function brokerKind(): BenchBroker {
  return kind;
}

/** ACTIVEMQ_PORT wins (for a broker elsewhere); otherwise the test broker's STOMP port. */
export function stompPort(): number {
  return Number(process.env.ACTIVEMQ_PORT || (kind === 'classic' ? 61613 : 61713));
}

/** Fails with what to do when nothing answers STOMP: the bench needs the broker the tests use. */
export async function requireBroker(): Promise<void> {
  const STOMP_PORT = stompPort();
  const BROKER_KIND = kind;
  const SETUP_SCRIPT = kind === 'classic' ? 'test/setup/activemq.sh' : 'test/setup/artemis.sh';
  const answered = await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: STOMP_HOST, port: STOMP_PORT });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.end('CONNECT\naccept-version:1.2\nhost:/\nlogin:admin\npasscode:admin\n\n\0');
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
  const xml = '/etc/activemq/instances-enabled/main/activemq.xml';
  if (
    answered &&
    BROKER_KIND === 'classic' &&
    existsSync(xml) &&
    !readFileSync(xml, 'utf8').includes('tcpNoDelay=true')
  ) {
    console.warn(
      `note: ${xml} has no transport.tcpNoDelay=true: latencies will include 40 ms Nagle stalls. ` +
        'Run `sudo bash test/setup/activemq.sh restart` to reconfigure (docs/test-broker.md).',
    );
  }
  if (!answered) {
    throw new Error(
      `ActiveMQ (${BROKER_KIND}) does not answer STOMP on ${STOMP_HOST}:${STOMP_PORT}. The broker scenarios ` +
        `need it: install and start it with \`sudo bash ${SETUP_SCRIPT}\` (FASTMON_TEST_BROKER), then rerun.`,
    );
  }
}

export class StompPeer {
  private constructor(private readonly client: Client) {}

  static async connect(): Promise<StompPeer> {
    const client = await new Promise<Client>((resolve, reject) => {
      const connecting = stompit.connect(
        {
          host: STOMP_HOST,
          port: stompPort(),
          connectHeaders: {
            host: '/',
            login: process.env.ACTIVEMQ_USER || 'admin',
            passcode: process.env.ACTIVEMQ_PASSWORD || 'admin',
            'accept-version': '1.2',
            // The peer sends a heart-beat every 10 s: a subscriber that only receives is otherwise closed by
            // Artemis after its 60 s connection TTL, which a loaded machine's latency step outlasts.
            'heart-beat': '10000,0',
          },
        },
        (err, c) => (err ? reject(err) : resolve(c)),
      );
      // The ceiling gets the agent's own write coalescing, so it stays a ceiling.
      coalesceStompitWrites(connecting);
    });
    client.on('error', () => {});
    return new StompPeer(client);
  }

  /** Called when the connection fails (a broker restarted by another engineer's chaos run, say). */
  onError(handler: (err: Error) => void): void {
    this.client.on('error', handler);
  }

  /** Fire and forget: what a data agent without receipts does. */
  send(destination: string, body: string, headers: Record<string, string> = {}): void {
    const frame = this.client.send({ destination, 'content-type': 'application/json', ...headers });
    frame.write(body);
    frame.end();
  }

  /** Resolves once the broker confirmed the frame with a RECEIPT. */
  sendConfirmed(destination: string, body: string, headers: Record<string, string> = {}): Promise<void> {
    return new Promise((resolve) => {
      const frame = this.client.send(
        { destination, 'content-type': 'application/json', ...headers },
        { onReceipt: () => resolve() },
      );
      frame.write(body);
      frame.end();
    });
  }

  /**
   * With `ack: auto`. On Artemis the window is said explicitly: -1 (no window), what Artemis picks for
   * an auto subscription without the header. Any byte window would stall it once used up, because
   * Artemis hands credit back on ACK frames only (src/messaging/flow.ts); a prefetch header, which
   * Artemis would read as bytes, must never creep in here. Classic ignores the header.
   */
  subscribe(destination: string, onBody: (body: string, headers: Record<string, string>) => void): void {
    const window: Record<string, string> = kind === 'artemis' ? { 'consumer-window-size': '-1' } : {};
    this.client.subscribe({ destination, ack: 'auto', ...window }, (err, message) => {
      if (err) return;
      message.readString('utf-8', (readErr, body) => {
        if (!readErr && body !== undefined) onBody(body, message.headers);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 2000);
      this.client.disconnect(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
