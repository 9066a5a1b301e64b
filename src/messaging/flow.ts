// Which broker the agent talks to, and the SUBSCRIBE headers that give one flow-control setting the same meaning on each.

import { FRAME_HEADER_ALLOWANCE } from './limits.js';

/**
 * Told apart by the CONNECTED frame's `server` header: Artemis answers
 * `ActiveMQ-Artemis/2.40.0 ActiveMQ Artemis Messaging Engine`, Classic `ActiveMQ/5.17.6`.
 */
export type BrokerKind = 'artemis' | 'classic' | 'unknown';

export function brokerKindOf(server: string | undefined): BrokerKind {
  if (!server) return 'unknown';
  if (/^ActiveMQ-Artemis\//i.test(server)) return 'artemis';
  if (/^ActiveMQ\//i.test(server)) return 'classic';
  return 'unknown';
}

/** How many unacknowledged messages a subscription must be able to hold, and how large one may be. */
export interface Window {
  messages: number;
  /** The largest message body the agent accepts (`agent.max_message_bytes`). */
  messageBytes: number;
}

/** Artemis reads consumer-window-size as a Java int. */
const MAX_WINDOW_BYTES = 2 ** 31 - 1;

/**
 * ActiveMQ Classic counts `activemq.prefetchSize` in messages. Artemis reads the same header as
 * `consumer-window-size` in BYTES (default 10,240 for client acknowledgement), so a prefetch of 500
 * let one or two `stf_ready` through at a time; it takes `consumer-window-size` before
 * `activemq.prefetchSize`. Sized as messages × (largest body + headers), the window lets at least
 * `messages` unacknowledged messages reach the agent however large they are, and bounds the bytes
 * held to what Classic's prefetch bounds with messages of the largest size.
 *
 * With `ack: auto` Artemis never hands window credit back (it returns credit on ACK frames only),
 * so any window stalls the subscription once it is used up: -1 (no window) is the only value that
 * works, and what Artemis itself picks for auto when the header is absent.
 *
 * An unknown broker gets both headers: each ActiveMQ reads its own and ignores the other's.
 */
export function windowHeaders(kind: BrokerKind, ack: 'auto' | 'client-individual', window: Window) {
  const headers: Record<string, string> = {};
  if (kind !== 'classic') {
    const bytes = Math.min(
      MAX_WINDOW_BYTES,
      window.messages * (window.messageBytes + FRAME_HEADER_ALLOWANCE),
    );
    headers['consumer-window-size'] = ack === 'auto' ? '-1' : String(bytes);
  }
  if (kind !== 'artemis') headers['activemq.prefetchSize'] = String(window.messages);
  return headers;
}
