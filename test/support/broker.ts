// A plain stompit peer for tests: publishes what the testbed would and records what the agent broadcasts.

import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { type StompitClient, stompit } from '../../src/messaging/stompit.js';

type Client = StompitClient;

export interface Received {
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

export function brokerAddress(): { host: string; port: number } {
  if (!inject('brokerAvailable')) {
    throw new Error(
      `the test broker (${inject('brokerKind')}) does not answer on ${inject('stompHost')}:${inject('stompPort')}: ` +
        'run `sudo bash test/setup/broker.sh` (FASTMON_TEST_BROKER=artemis|classic)',
    );
  }
  return { host: inject('stompHost'), port: inject('stompPort') };
}

/** Which broker the suite runs against (FASTMON_TEST_BROKER, default artemis). */
export function brokerKind(): 'artemis' | 'classic' {
  return inject('brokerKind');
}

/** The setup script of the selected broker (start | stop | restart | status), relative to the repository. */
export function brokerScript(): string {
  return brokerKind() === 'classic' ? 'test/setup/activemq.sh' : 'test/setup/artemis.sh';
}

/** A fresh topic per test, so test files running at once never see each other's messages. */
export function uniqueTopic(label: string): string {
  return `/topic/fastmon.test.${label}.${randomUUID().slice(0, 8)}`;
}

export class TestPeer {
  /** Why the peer's connection ended, if it did: its collectors fail with it instead of timing out. */
  private lost: Error | null = null;
  private readonly collectors: Collector[] = [];

  private constructor(private readonly client: Client) {
    client.on('error', (err) => {
      this.lost = err;
      for (const c of this.collectors) c.fail(err);
    });
  }

  /** Connects to the test broker; `port` picks another of its STOMP acceptors. */
  static async connect(port = brokerAddress().port): Promise<TestPeer> {
    const { host } = brokerAddress();
    const client = await new Promise<Client>((resolve, reject) => {
      stompit.connect(
        {
          host,
          port,
          connectHeaders: {
            host: '/',
            login: 'admin',
            passcode: 'admin',
            'accept-version': '1.1,1.2',
            // The peer sends heart-beats: a connection that is silent for the broker's connection TTL
            // (60 s on Artemis) is closed by it, and a peer that only listens would then miss what a
            // long test waits for.
            'heart-beat': '5000,0',
          },
          // The peer sees everything the tests send the agent (a 100 KB header, 5,000 headers):
          // stompit's defaults (1,024-byte lines, 64 headers) would drop its connection.
          maxLineLength: 4 * 1024 * 1024,
          maxHeaders: 100_000,
        },
        (err, c) => (err ? reject(err) : resolve(c)),
      );
    });
    return new TestPeer(client);
  }

  /** Sends a JSON body with no headers, as BaseAgent.send_message does; resolves on the broker's receipt. */
  publish(destination: string, body: unknown, headers: Record<string, string> = {}): Promise<void> {
    return new Promise((resolve) => {
      const frame = this.client.send({ destination, ...headers }, { onReceipt: () => resolve() });
      frame.write(typeof body === 'string' ? body : JSON.stringify(body));
      frame.end();
    });
  }

  /** Records every JSON message on a destination from now on. Resolves once the broker confirmed the SUBSCRIBE. */
  async collect(destination: string): Promise<Collector> {
    const collector = new Collector();
    if (this.lost) collector.fail(this.lost);
    this.collectors.push(collector);
    this.client.subscribe({ destination, ack: 'auto' }, (err, message) => {
      if (err) return;
      message.readString('utf-8', (e, text) => {
        if (e || text === undefined) return;
        try {
          collector.push({ headers: message.headers, body: JSON.parse(text) as Record<string, unknown> });
        } catch {
          collector.push({ headers: message.headers, body: { unparsed: text } });
        }
      });
    });
    // A receipt on a throwaway SEND orders after the SUBSCRIBE on this connection.
    await this.publish('/topic/fastmon.test.sync', '{}');
    return collector;
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

export class Collector {
  readonly messages: Received[] = [];
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;

  /** The peer's connection ended: a wait that is not yet satisfied fails with this reason. */
  fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters) w();
    this.waiters = [];
  }

  push(m: Received): void {
    this.messages.push(m);
    for (const w of this.waiters) w();
  }

  bodies(msgType?: string): Record<string, unknown>[] {
    return this.messages.map((m) => m.body).filter((b) => msgType === undefined || b.msg_type === msgType);
  }

  /** Waits until `predicate` holds over what was received, or fails after timeoutMs with what arrived. */
  async waitFor(predicate: (c: Collector) => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.failure) {
        throw new Error(
          `the test peer's broker connection ended (${this.failure.message}) while waiting for ${what}; received ${this.messages.length} messages`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out waiting for ${what}; received ${this.messages.length} messages: ${JSON.stringify(this.bodies().map((b) => b.msg_type))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.waiters = [];
    }
  }
}
