// Where notifications go: every broadcast destination on the broker, or stdout when there is no broker.

import type { Writable } from 'node:stream';
import { finalizeOutgoing } from '../messaging/codec.js';
import type { StompConnection } from '../messaging/stomp.js';

export interface Broadcaster {
  readonly kind: 'stomp' | 'stdout';
  /** Resolves when every destination has the message. */
  publish(body: Record<string, unknown>): Promise<void>;
}

export interface Identity {
  sender: string;
  namespace: string | null;
}

/**
 * Besides the JSON body (what every testbed agent reads), each message carries `msg_type`,
 * `namespace` and `run_id` headers like the fast processing agent's, so consumers can filter
 * with a selector without parsing bodies; our own subscription uses that to skip our broadcasts.
 */
export class StompBroadcaster implements Broadcaster {
  readonly kind = 'stomp';

  constructor(
    private readonly connection: StompConnection,
    private readonly destinations: readonly string[],
    private readonly identity: Identity,
    private readonly persistent = true,
  ) {}

  async publish(body: Record<string, unknown>): Promise<void> {
    const message = finalizeOutgoing(body, this.identity.sender, this.identity.namespace);
    const text = JSON.stringify(message);
    const headers: Record<string, string> = { msg_type: String(message.msg_type) };
    if (this.persistent) headers.persistent = 'true';
    if (typeof message.namespace === 'string') headers.namespace = message.namespace;
    if (message.run_id !== null && message.run_id !== undefined) headers.run_id = String(message.run_id);
    await Promise.all(this.destinations.map((d) => this.connection.publish(d, text, headers)));
  }
}

/**
 * One JSON object per line on stdout (or any stream): the embedded default, pipe-friendly. `format`
 * renders a message as text instead (the command gives the client's aligned lines on a terminal).
 */
export class StreamBroadcaster implements Broadcaster {
  readonly kind = 'stdout';

  constructor(
    private readonly out: Writable,
    private readonly identity: Identity,
    private readonly format: (message: Record<string, unknown>) => string = (m) => JSON.stringify(m),
  ) {}

  async publish(body: Record<string, unknown>): Promise<void> {
    const line = `${this.format(finalizeOutgoing(body, this.identity.sender, this.identity.namespace))}\n`;
    if (!this.out.write(line)) await new Promise<void>((resolve) => this.out.once('drain', () => resolve()));
  }
}
