// The only module that touches stompit: one STOMP connection that reconnects, resubscribes and publishes.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { isIP, type NetConnectOpts, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { type ErrorCode, FastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { coalesceWrites } from './coalesce.js';
import { type BrokerKind, brokerKindOf, type Window, windowHeaders } from './flow.js';
import { CUT_HEADER, type FrameFilterLimits, filterInbound } from './frame-filter.js';
import { DEFAULT_MAX_BODY_BYTES, FRAME_LIMITS, stompitParserLimits } from './limits.js';
import {
  type StompitClient,
  type StompitFrame,
  type StompitSubscription,
  stompit,
  subscribeWithReceipt,
} from './stompit.js';

// The slice of stompit 1.0 used here. @types/stompit lags the library (no `headers` on frames,
// no heartbeat margins, a destroy() that needs an argument), so the shapes are declared here.
type Client = StompitClient;
type Message = StompitFrame;

export interface StompOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  useSsl: boolean;
  /** PEM CA bundle; empty means the system CAs. */
  caFile: string;
  /** Offered both ways; 0 disables heart-beats. */
  heartbeatMs: number;
  /** `client-id` on CONNECT: the agent name, as BaseAgent. */
  clientId: string;
  reconnectInitialMs?: number;
  reconnectMaxMs: number;
  /** How long publish() waits for a connection (and for the broker's receipt). */
  publishTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Bodies longer than this are refused (MESSAGE_TOO_LARGE); only this much of one is kept. */
  maxBodyBytes?: number;
  /** What the inbound filter cuts frames down to (default FRAME_LIMITS; lower ones in tests). */
  frameLimits?: FrameFilterLimits;
  logger: Logger;
}

/** Why a message is refused before anyone reads it: the frame was over a limit (limits.ts). */
export interface FrameRefusal {
  code: Extract<ErrorCode, 'MESSAGE_TOO_LARGE' | 'MESSAGE_HEADERS_TOO_LARGE'>;
  reason: string;
}

export interface InboundMessage {
  body: string;
  headers: Record<string, string>;
  messageId: string;
  /** Acknowledge (client-individual subscriptions only; a no-op for auto). */
  ack(): void;
  /**
   * False once the connection it came on is gone: it can no longer be acknowledged, and the
   * broker hands it out again (that is the at-least-once guarantee).
   */
  isLive(): boolean;
  /** Set when the frame was over a limit: `body` is then at most its first maxBodyBytes. */
  refusal?: FrameRefusal;
}

export interface SubscriptionSpec {
  destination: string;
  ack: 'auto' | 'client-individual';
  headers?: Record<string, string>;
  /** Unacknowledged messages the broker may hand out at once; translated per broker (flow.ts). */
  window?: Window;
}

type Handler = (message: InboundMessage) => void;

interface Sub {
  spec: SubscriptionSpec;
  handler: Handler;
  live: StompitSubscription | null;
  /** The broker confirmed the SUBSCRIBE on the current connection (its RECEIPT arrived). */
  confirmed: boolean;
}

interface PendingReceipt {
  reject: (err: Error) => void;
}

/**
 * Reconnect is our own loop rather than stompit's ConnectFailover: with a `client-id`, a new
 * connection opened before the broker has dropped the old one is refused as "already
 * connected" (stompit #27), so every attempt first destroys the old socket and retries with
 * backoff until the broker lets go. Subscriptions are remembered and sent again on every
 * connection, since STOMP subscriptions die with their connection (stomp.py #294 in the Python
 * stack lost them silently).
 *
 * Events: 'connected' (first: boolean), 'disconnected' (error).
 */
export class StompConnection extends EventEmitter {
  private client: Client | null = null;
  private readonly subs = new Set<Sub>();
  private readonly pendingReceipts = new Set<PendingReceipt>();
  private closing = false;
  private attempt = 0;
  private connects = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private nextConnection: Promise<void> | null = null;
  private kind: BrokerKind = 'unknown';
  private readonly ca: Buffer | undefined;

  constructor(private readonly options: StompOptions) {
    super();
    this.ca = options.useSsl && options.caFile ? readFileSync(options.caFile) : undefined;
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /** The broker of the current (or last) connection, from its CONNECTED frame. */
  get brokerKind(): BrokerKind {
    return this.kind;
  }

  /** Number of successful connections after the first. */
  get reconnects(): number {
    return Math.max(0, this.connects - 1);
  }

  start(): void {
    this.closing = false;
    this.connect();
  }

  /**
   * Resolves once connected (or rejects after timeoutMs). Every waiter shares one promise of the next
   * connection: during an outage hundreds of publishes may wait, and one listener each would trip
   * Node's "possible EventEmitter memory leak" warning in the operator's log.
   */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.client) return Promise.resolve();
    this.nextConnection ??= new Promise<void>((resolve) =>
      this.once('connected', () => {
        this.nextConnection = null;
        resolve();
      }),
    );
    const connected = this.nextConnection;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new FastmonError(
            'BROKER_UNAVAILABLE',
            `no STOMP connection to ${this.where()} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      // A wait abandoned by a stop (the connection closed meanwhile) must not hold the process open.
      timer.unref();
      void connected.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  subscribe(spec: SubscriptionSpec, handler: Handler): () => void {
    const sub: Sub = { spec, handler, live: null, confirmed: false };
    this.subs.add(sub);
    if (this.client) this.attach(this.client, sub);
    return () => {
      this.subs.delete(sub);
      if (sub.live && this.client) {
        try {
          sub.live.unsubscribe();
        } catch {
          // the connection is going away; the subscription goes with it
        }
      }
      sub.live = null;
    };
  }

  /**
   * Sends one message and resolves when the broker has confirmed it with a RECEIPT, so a
   * resolved publish is on the broker. Waits for a connection if there is none yet.
   */
  async publish(destination: string, body: string, headers: Record<string, string> = {}): Promise<void> {
    const timeoutMs = this.options.publishTimeoutMs ?? 10_000;
    if (!this.client) {
      if (this.closing)
        throw new FastmonError('PUBLISH_FAILED', `cannot publish to ${destination}: connection closed`);
      await this.waitConnected(timeoutMs).catch((err: Error) => {
        throw new FastmonError('PUBLISH_FAILED', `cannot publish to ${destination}: ${err.message}`, {
          destination,
        });
      });
    }
    const client = this.client as Client;
    await new Promise<void>((resolve, reject) => {
      const pending: PendingReceipt = {
        reject: (err) => {
          clearTimeout(timer);
          reject(
            new FastmonError('PUBLISH_FAILED', `publish to ${destination} failed: ${err.message}`, {
              destination,
            }),
          );
        },
      };
      const timer = setTimeout(() => {
        this.pendingReceipts.delete(pending);
        pending.reject(new Error(`no receipt within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pendingReceipts.add(pending);
      const frame = client.send(
        { destination, 'content-type': 'application/json', ...headers },
        {
          onReceipt: () => {
            clearTimeout(timer);
            this.pendingReceipts.delete(pending);
            resolve();
          },
        },
      );
      frame.write(body);
      frame.end();
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.destroy();
        resolve();
      }, 2000);
      client.disconnect(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private where(): string {
    return `${this.options.useSsl ? 'stomp+ssl' : 'stomp'}://${this.options.host}:${this.options.port}`;
  }

  private connect(): void {
    const o = this.options;
    const heartbeat = `${o.heartbeatMs},${o.heartbeatMs}`;
    const connectOptions: Record<string, unknown> = {
      host: o.host,
      port: o.port,
      timeout: o.connectTimeoutMs ?? 5000,
      connectHeaders: {
        host: o.host,
        login: o.user,
        passcode: o.password,
        'accept-version': '1.1,1.2',
        'heart-beat': heartbeat,
        'client-id': o.clientId,
      },
      // stompit declares a missed heart-beat when no byte arrives within the interval plus
      // this margin; ActiveMQ's beats drift, and a 100 ms margin gives spurious timeouts.
      heartbeatDelayMargin: Math.max(1000, Math.floor(o.heartbeatMs / 2)),
      heartbeatOutputMargin: Math.floor(o.heartbeatMs / 10),
      // stompit's parser limits (1,024-byte lines, 64 headers by default) are raised above the
      // agent's own (limits.ts); frames over those are cut by the filter and refused one by one.
      ...stompitParserLimits(o.frameLimits ?? FRAME_LIMITS),
      connect: (options: NetConnectOpts & ConnectionOptions, onConnected: () => void): Socket => {
        const socket = o.useSsl ? tlsConnect(options, onConnected) : netConnect(options, onConnected);
        filterInbound(socket, o.frameLimits ?? FRAME_LIMITS);
        coalesceWrites(socket);
        return socket;
      },
    };
    if (o.useSsl) {
      // SNI takes host names only (RFC 6066); an IP address is checked against the certificate's IP SANs.
      if (!isIP(o.host)) connectOptions.servername = o.host;
      if (this.ca) connectOptions.ca = [this.ca];
      // No plaintext fallback and no unverified TLS: a broker we cannot verify is an error.
      connectOptions.rejectUnauthorized = true;
    }
    let settled = false;
    // stompit times out the TCP connect only; a broker that accepts the socket but never answers
    // CONNECT (overloaded, or a proxy in front of a dead one) would otherwise hang us forever.
    const handshakeMs = (o.connectTimeoutMs ?? 5000) * 2;
    const handshake = setTimeout(() => {
      if (settled) return;
      settled = true;
      this.onLost(client, new Error(`no CONNECTED frame within ${handshakeMs} ms`));
    }, handshakeMs);
    const client = stompit.connect(connectOptions, (err) => {
      clearTimeout(handshake);
      if (settled) return;
      settled = true;
      if (err) {
        this.onLost(client, err);
        return;
      }
      if (this.closing) {
        client.destroy();
        return;
      }
      this.client = client;
      this.kind = brokerKindOf(client.headers?.server);
      this.attempt = 0;
      this.connects++;
      client.on('error', (e: Error) => this.onLost(client, e));
      client.on('end', () => this.onLost(client, new Error('connection ended')));
      for (const sub of this.subs) this.attach(client, sub);
      this.options.logger.info(
        {
          broker: this.where(),
          clientId: o.clientId,
          version: client.headers?.version,
          server: client.headers?.server ?? null,
        },
        this.connects === 1 ? 'connected to broker' : 'reconnected to broker',
      );
      this.emit('connected', this.connects === 1);
    });
    // Errors before CONNECTED arrive through the callback; this catches anything after a failed one.
    client.on('error', () => {});
  }

  private onLost(client: Client, err: Error): void {
    if (this.client === client) this.client = null;
    else if (this.client !== null) return; // a stale client of an earlier connection
    try {
      client.destroy();
    } catch {
      // already destroyed
    }
    for (const pending of this.pendingReceipts) pending.reject(err);
    this.pendingReceipts.clear();
    for (const sub of this.subs) {
      sub.live = null;
      sub.confirmed = false;
    }
    if (this.closing) return;
    if (this.reconnectTimer) return;
    const initial = this.options.reconnectInitialMs ?? 250;
    const delay = Math.min(this.options.reconnectMaxMs, initial * 2 ** Math.min(this.attempt, 16));
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.attempt++;
    this.options.logger.warn(
      { broker: this.where(), err: { message: messageOf(err) }, retryInMs: jittered, attempt: this.attempt },
      'broker connection lost or refused; reconnecting',
    );
    this.emit('disconnected', err);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closing) this.connect();
    }, jittered);
  }

  private attach(client: Client, sub: Sub): void {
    const headers: Record<string, string> = {
      destination: sub.spec.destination,
      ack: sub.spec.ack,
      ...(sub.spec.window ? windowHeaders(this.kind, sub.spec.ack, sub.spec.window) : {}),
      ...sub.spec.headers,
    };
    sub.confirmed = false;
    sub.live = subscribeWithReceipt(
      client,
      headers,
      (err, message) => {
        // On a dropped connection stompit calls every listener with the error; 'error' handles it.
        if (err) return;
        this.read(client, sub, message);
      },
      () => {
        if (this.client !== client) return;
        sub.confirmed = true;
        this.emit('subscribed', sub.spec.destination);
      },
    );
  }

  /** Resolves once every subscription is confirmed by the broker on the current connection. */
  async waitSubscribed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while ([...this.subs].some((s) => !s.confirmed)) {
      if (Date.now() > deadline) return false;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.off('subscribed', done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(1, Math.min(200, deadline - Date.now())));
        this.on('subscribed', done);
      });
    }
    return true;
  }

  private read(client: Client, sub: Sub, message: Message): void {
    const headers = message.headers;
    const isClientAck = sub.spec.ack !== 'auto';
    const maxBody = this.options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    // The body is read as a stream so that no more than maxBody bytes of it are ever kept: the
    // rest is counted and let go (the frame must still be read to its end to reach the next one).
    const chunks: Buffer[] = [];
    let kept = 0;
    let total = 0;
    message.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (kept >= maxBody) return;
      const part = kept + chunk.length > maxBody ? chunk.subarray(0, maxBody - kept) : chunk;
      chunks.push(part);
      kept += part.length;
    });
    message.on('error', (err: Error) => {
      this.options.logger.error({ err: { message: messageOf(err) } }, 'failed to read a message body');
    });
    message.on('end', () => {
      const messageId = headers['message-id'] ?? '';
      let refusal: FrameRefusal | undefined;
      const cut = headers[CUT_HEADER];
      if (cut !== undefined) refusal = { code: 'MESSAGE_HEADERS_TOO_LARGE', reason: `frame cut: ${cut}` };
      else if (total > maxBody)
        refusal = {
          code: 'MESSAGE_TOO_LARGE',
          reason: `body of ${total} bytes over the ${maxBody}-byte limit`,
        };
      // At debug level, every frame the broker hands over, before anything else sees it: when the
      // broker counts a message as delivering to us and nothing happened, this says whether it arrived.
      if (this.options.logger.isLevelEnabled('debug'))
        this.options.logger.debug(
          {
            msgId: messageId,
            subscription: sub.spec.destination,
            redelivered: headers.redelivered === 'true',
            bytes: total,
          },
          'message received',
        );
      const inbound: InboundMessage = {
        body: Buffer.concat(chunks, kept).toString('utf8'),
        headers,
        messageId,
        ack: () => {
          if (isClientAck && this.client === client) client.ack(message);
        },
        isLive: () => this.client === client,
      };
      if (refusal) inbound.refusal = refusal;
      sub.handler(inbound);
    });
  }
}
