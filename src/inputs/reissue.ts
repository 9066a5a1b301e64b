// Keeps Artemis' redelivery limit from deciding an STF's fate: a redelivered message on a shared queue goes back as a fresh one.

import type { BrokerKind } from '../messaging/flow.js';
import type { Role } from '../messaging/subscriptions.js';

/** How many times the agents have put this message back on its queue. */
export const REISSUE_HEADER = 'fastmon_reissues';
/**
 * Past this many, the message is handled as it is and the broker's own limit applies again: a
 * message that kills every agent that takes it then ends in the dead-letter address instead of
 * looping for ever.
 */
export const MAX_REISSUES = 50;

/**
 * Artemis counts a delivery attempt each time a consumer dies or loses its connection with the
 * message unacknowledged, and after `max-delivery-attempts` (10 by default) moves it to the
 * dead-letter address, where no agent reads it. STOMP frames carry no delivery count, only
 * `redelivered`, so an agent cannot see the limit coming. Instead, the first agent that gets a
 * redelivered message from a shared queue (a fully qualified queue name, where a SEND reaches that
 * queue only) sends it to the queue again, persistent, with a count of its own, and acknowledges
 * the original once the broker has the copy: the copy starts with a delivery count of 0. Classic
 * has no such limit for lost connections, and a topic subscription has no queue to send to.
 *
 * Returns the headers of the copy, or null when the message is to be handled as it is.
 */
export function reissueHeaders(
  kind: BrokerKind,
  role: Role,
  destination: string,
  headers: Record<string, string>,
): Record<string, string> | null {
  if (kind !== 'artemis' || role !== 'stf' || !destination.includes('::')) return null;
  if (headers.redelivered !== 'true') return null;
  const count = Number(headers[REISSUE_HEADER] ?? 0);
  if (!Number.isInteger(count) || count < 0 || count >= MAX_REISSUES) return null;
  return { persistent: 'true', [REISSUE_HEADER]: String(count + 1) };
}
