// What every message source of `swf-fastmon client` offers the screen, and the helpers they share.

import { FastmonError, messageOf } from '../../errors.js';
import type { Logger } from '../../log/logger.js';

/** A parsed JSON body as published (tf_file_registered, fastmon_summary, fastmon_status, …). */
export type ClientMessage = Record<string, unknown>;

export interface Source {
  /** Starts delivering; resolves once connected/subscribed (or, for a catalog without follow, once replay began). */
  start(onMessage: (message: ClientMessage) => void): Promise<void>;
  /** Resolves when a finite source (catalog replay) has delivered everything; never for live sources. */
  readonly finished: Promise<void>;
  /** One line for the screen, e.g. "stomp://localhost:61612 /topic/epictopic" or "sse https://…/api/messages/stream/ (reconnecting)". */
  describe(): string;
  /** Live status for the dashboard: 'connected' | 'connecting' | 'disconnected' | 'done'. */
  status(): string;
  close(): Promise<void>;
}

export type SourceStatus = 'connected' | 'connecting' | 'disconnected' | 'done';

/** A live source's `finished`: it never ends by itself. */
export function never(): Promise<void> {
  return new Promise<void>(() => {});
}

/** A JSON object body, or null for anything else (text, arrays, numbers, `null`). */
export function parseObject(text: string): ClientMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as ClientMessage)
    : null;
}

/**
 * A throwing screen handler must not take the transport down with it (on STOMP it would run inside
 * stompit's callback, in SSE it would end the stream): it is logged and the next message goes on.
 */
export function safeDeliver(
  onMessage: (message: ClientMessage) => void,
  message: ClientMessage,
  logger: Logger,
): void {
  try {
    onMessage(message);
  } catch (err) {
    const error = new FastmonError(
      'CLIENT_SOURCE_FAILED',
      `the message handler failed: ${messageOf(err)}`,
      { msgType: message.msg_type },
      { cause: err },
    );
    logger.error({ err: error }, 'message handler failed; continuing with the next message');
  }
}
