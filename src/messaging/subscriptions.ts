// What the agent subscribes to: one topic of its own, or a queue shared with competing agents plus the topic for the run lifecycle.

/**
 * Which messages a subscription is for. `all`: the agent's own topic subscription. With a shared
 * queue, the competitors split the `stf_ready` (`stf`), but each needs every run lifecycle message
 * (an `end_run` taken by one competitor would leave the others without their `fastmon_status`), so
 * each also reads the topic on a subscription of its own for those (`lifecycle`).
 */
export type Role = 'all' | 'stf' | 'lifecycle';

export interface PlannedSubscription {
  destination: string;
  role: Role;
  /** Skip fastmon's own broadcasts with a selector (not on shared queues: see below). */
  selector: boolean;
  /** Durable subscription name, for topic subscriptions only. */
  durableName: string;
}

/**
 * The topic a shared queue is fed from, or null when the destination is not one:
 * - Artemis fully qualified queue name `/topic/epictopic::fastmon` (a multicast queue of address
 *   `/topic/epictopic`, or `epictopic` where the acceptor strips prefixes) → `/topic/epictopic`;
 * - ActiveMQ Classic virtual-topic consumer queue `/queue/Consumer.fastmon.epictopic` → `/topic/epictopic`.
 */
export function sharedTopicOf(destination: string): string | null {
  const fqqn = destination.indexOf('::');
  if (fqqn > 0) return destination.slice(0, fqqn);
  const virtual = /^\/queue\/Consumer\.[^.]+\.(.+)$/.exec(destination);
  if (virtual) return `/topic/${virtual[1]}`;
  return null;
}

/**
 * A shared queue gets no selector: Artemis ignores a selector on a fully qualified queue name (the
 * queue is created without a filter), and on a Classic queue the messages a selector skips stay in
 * the queue for ever. The agent acknowledges its own broadcasts there unread instead (by header).
 */
export function planSubscriptions(subscription: string, durableName: string): PlannedSubscription[] {
  const topic = sharedTopicOf(subscription);
  if (topic === null) return [{ destination: subscription, role: 'all', selector: true, durableName }];
  return [
    { destination: subscription, role: 'stf', selector: false, durableName: '' },
    { destination: topic, role: 'lifecycle', selector: true, durableName },
  ];
}
