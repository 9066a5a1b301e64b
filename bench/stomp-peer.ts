// A bare stompit client for the bench: the producer and listener around the agent, and the raw ceiling.

import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { coalesceStompitWrites } from '../src/messaging/coalesce.js';
import { type StompitClient, stompit } from '../src/messaging/stompit.js';

type Client = StompitClient;

export const STOMP_HOST = process.env.ACTIVEMQ_HOST || '127.0.0.1';
/** The test broker FASTMON_TEST_BROKER selects (default artemis), as `npm run bench` set it up. */
export const BROKER_KIND = process.env.FASTMON_TEST_BROKER === 'classic' ? 'classic' : 'artemis';
const SETUP_SCRIPT = BROKER_KIND === 'classic' ? 'test/setup/activemq.sh' : 'test/setup/artemis.sh';
export const STOMP_PORT = Number(process.env.ACTIVEMQ_PORT || (BROKER_KIND === 'classic' ? 61613 : 61713));

/** Fails with what to do when nothing answers STOMP: the bench needs the broker the tests use. */
export async function requireBroker(): Promise<void> {
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
          port: STOMP_PORT,
          connectHeaders: {
            host: '/',
            login: process.env.ACTIVEMQ_USER || 'admin',
            passcode: process.env.ACTIVEMQ_PASSWORD || 'admin',
            'accept-version': '1.2',
            'heart-beat': '0,0',
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

  subscribe(destination: string, onBody: (body: string, headers: Record<string, string>) => void): void {
    this.client.subscribe({ destination, ack: 'auto' }, (err, message) => {
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
