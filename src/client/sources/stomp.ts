// The client's STOMP source: one auto-ack subscription on the broker, msg_type filtered after parsing.

import { randomUUID } from 'node:crypto';
import { osUser } from '../../config/os-user.js';
import { FastmonError, messageOf } from '../../errors.js';
import { StompConnection, type StompOptions } from '../../messaging/stomp.js';
import {
  type ClientMessage,
  never,
  parseObject,
  type Source,
  type SourceStatus,
  safeDeliver,
} from './source.js';

/** The broker settings are the agent's connection options; a client adds what it reads. */
export type StompSourceOptions = Pick<
  StompOptions,
  'host' | 'port' | 'user' | 'password' | 'useSsl' | 'caFile' | 'logger'
> & {
  destination: string;
  msgTypes: string[];
};

/**
 * No selector, even with msgTypes: testbed senders (BaseAgent.send_message) put msg_type in the
 * body only, so a `msg_type IN (…)` selector would silently drop every message but our agent's.
 * Auto ack: a screen has nothing to redeliver to, and a slow terminal must not hold the broker's
 * prefetch window of a shared topic.
 */
export function stompSource(o: StompSourceOptions): Source {
  const logger = o.logger.child({ source: 'stomp' });
  const wanted = new Set(o.msgTypes);
  const where = `${o.useSsl ? 'stomp+ssl' : 'stomp'}://${o.host}:${o.port}`;
  // Unique per process and per source: ActiveMQ refuses a second connection with a client-id in use.
  const clientId = `fastmon-client-${osUser(o.user)}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const connection = connect({
    host: o.host,
    port: o.port,
    user: o.user,
    password: o.password,
    useSsl: o.useSsl,
    caFile: o.caFile,
    heartbeatMs: 10_000,
    clientId,
    reconnectMaxMs: 30_000,
    logger,
  });
  let state: SourceStatus = 'disconnected';
  let everConnected = false;
  let closed = false;
  let unsubscribe: (() => void) | null = null;
  let releaseStart: (() => void) | null = null;
  connection.on('connected', () => {
    everConnected = true;
    if (!closed) state = 'connected';
  });
  connection.on('disconnected', () => {
    // Until the first connection it is still 'connecting'; afterwards the dashboard shows the loss.
    if (!closed) state = everConnected ? 'disconnected' : 'connecting';
  });

  const handle = (onMessage: (message: ClientMessage) => void, body: string, messageId: string): void => {
    const message = parseObject(body);
    if (message === null) {
      logger.debug(
        { msgId: messageId, preview: body.slice(0, 120) },
        'skipping a message that is not a JSON object',
      );
      return;
    }
    if (wanted.size > 0 && !wanted.has(String(message.msg_type))) return;
    safeDeliver(onMessage, message, logger);
  };

  return {
    finished: never(),
    async start(onMessage) {
      if (closed) return;
      state = 'connecting';
      unsubscribe = connection.subscribe({ destination: o.destination, ack: 'auto' }, (inbound) =>
        handle(onMessage, inbound.body, inbound.messageId),
      );
      connection.start();
      // Resolves on the first CONNECTED (the SUBSCRIBE goes out with it) or when closed meanwhile;
      // an unreachable broker keeps start() pending while the connection retries.
      await new Promise<void>((resolve) => {
        if (connection.connected) return resolve();
        const done = () => {
          connection.off('connected', done);
          releaseStart = null;
          resolve();
        };
        connection.on('connected', done);
        releaseStart = done;
      });
    },
    describe() {
      const filter = wanted.size > 0 ? ` msg_types=${[...wanted].join(',')}` : '';
      const note = everConnected && state === 'disconnected' && !closed ? ' (reconnecting)' : '';
      return `${where} ${o.destination}${filter}${note}`;
    },
    status() {
      return state;
    },
    async close() {
      if (closed) return;
      closed = true;
      state = 'disconnected';
      unsubscribe?.();
      releaseStart?.();
      await connection.close();
    },
  };
}

/** The connection reads the CA bundle up front; a missing one is a setting to fix, named as such. */
function connect(options: StompOptions): StompConnection {
  try {
    return new StompConnection(options);
  } catch (err) {
    throw new FastmonError(
      'CONFIG_INVALID',
      `cannot read the broker CA bundle ${options.caFile}: ${messageOf(err)}`,
      { caFile: options.caFile },
      { cause: err },
    );
  }
}
