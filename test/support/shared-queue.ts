// Agent processes competing for one queue, as an operator scales out (docs/scaling-out.md).

import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { brokerAddress, brokerKind, uniqueTopic } from './broker.js';
import type { MonitorDouble } from './monitor-double.js';

/**
 * A fresh topic and the shared queue on it. Artemis: a fully qualified queue name on the topic's
 * address. Classic: a virtual topic, which Classic applies to topics named VirtualTopic.* without
 * configuration (for epictopic it needs activemq.xml). Broadcasts go to the topic itself, as on the
 * testbed, so they never pile up in the queue.
 */
export function sharedQueue(label: string): { topic: string; subscription: string; queueName: string } {
  const queueName = `fastmon-${randomUUID().slice(0, 8)}`;
  if (brokerKind() === 'artemis') {
    const topic = uniqueTopic(label);
    return { topic, subscription: `${topic}::${queueName}`, queueName };
  }
  const topic = `/topic/VirtualTopic.fastmon-${label}-${randomUUID().slice(0, 8)}`;
  return { topic, subscription: `/queue/Consumer.${queueName}.${topic.slice('/topic/'.length)}`, queueName };
}

/** The environment of one agent process on the queue: the test broker, the double, a store of its own. */
export function sharedQueueAgentEnv(
  double: MonitorDouble,
  queue: { topic: string; subscription: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  const { host, port } = brokerAddress();
  return {
    ACTIVEMQ_HOST: host,
    ACTIVEMQ_PORT: String(port),
    ACTIVEMQ_USER: 'admin',
    ACTIVEMQ_PASSWORD: 'admin',
    SWF_MONITOR_URL: double.url,
    SWF_API_TOKEN: double.token,
    SWF_LOG_LEVEL: 'WARNING',
    FASTMON_SUBSCRIPTION: queue.subscription,
    FASTMON_BROADCAST: queue.topic,
    FASTMON_HTTP_PORT: '-1',
    FASTMON_SUMMARY_INTERVAL_S: '0',
    FASTMON_CATALOG: path.join(tmpdir(), `fastmon-queue-agent-${randomUUID()}.sqlite`),
    // A client-id of its own: agent names repeat across monitor doubles (test/support/agent.ts).
    FASTMON_CLIENT_ID: `fastmon-queue-agent-${randomUUID()}`,
    ...extra,
  };
}

/** Polls `check` every 100 ms; fails after timeoutMs naming what it waited for, with `detail()`. */
export async function until(
  what: string,
  check: () => boolean,
  timeoutMs: number,
  detail = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}. ${detail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
