import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestPeer } from '../support/broker.js';
import { type Started, startCli } from '../support/cli.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';
import { sharedQueue, sharedQueueAgentEnv, until } from '../support/shared-queue.js';

const RUN = '108800';
const STF = `swf.${RUN}.000001.stf`;

let double: MonitorDouble;
let peer: TestPeer;
const agents: Started[] = [];

beforeAll(async () => {
  double = await startMonitorDouble();
  peer = await TestPeer.connect();
});
afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  await peer.close();
  await double.close();
});

// What an operator sees when an agent is stopped in the middle of an STF: the stf_ready is not lost.
// The agent stops taking messages, waits out the drain timeout, unsubscribes and disconnects; the
// work the timeout cut short ends after the UNSUBSCRIBE, so whatever its verdict (the cut-short
// samples go to the agent's own outbox here), the broker hands the message to the next consumer.
describe('shutdown with work in hand', () => {
  it('SIGTERM while swf-monitor holds the sample POSTs past the drain timeout: the next agent on the shared queue registers and broadcasts all 7 samples', async () => {
    double.addStfFile({ stf_filename: STF, run_number: Number(RUN) });
    // The shared queue an operator deploys (docs/scaling-out.md), as in scale-out.test.ts.
    const queue = sharedQueue('shutdown');
    const { topic } = queue;
    const seen = await peer.collect(topic);
    const registered = () => seen.bodies('tf_file_registered');
    const posts = () =>
      double.requests.filter((r) => r.method === 'POST' && r.path.includes('/fastmon-files/'));

    // swf-monitor holds every sample POST unanswered, far longer than the agent's drain timeout.
    double.hang({ path: '/fastmon-files/', method: 'POST' });
    const first = startCli(
      ['agent'],
      sharedQueueAgentEnv(double, queue, {
        FASTMON_DRAIN_TIMEOUT_S: '1',
        FASTMON_MONITOR_TIMEOUT_MS: '600000',
      }),
    );
    agents.push(first);
    // An agent heartbeats once it is started, and started means its subscriptions are confirmed.
    await until(
      'the first agent started',
      () => double.heartbeats.length > 0,
      60_000,
      () => first.out.stderr,
    );
    const firstName = (double.heartbeats[0]?.body as { instance_name?: string } | undefined)?.instance_name;
    expect(firstName).toBeDefined();
    await peer.publish(topic, { msg_type: 'stf_ready', filename: STF, run_id: RUN });
    await until(
      'the first agent posting the samples',
      () => posts().some((r) => r.status === 0 && !r.aborted),
      60_000,
      () => first.out.stderr.slice(-2000),
    );

    first.proc.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.out.stderr).toContain('drain timeout reached');
    // Nothing of the STF reached swf-monitor or the broadcast topic.
    expect(double.fastmonFiles).toHaveLength(0);
    expect(registered()).toHaveLength(0);

    // swf-monitor answers again; a second agent takes over the queue.
    double.clearFaults();
    const second = startCli(['agent'], sharedQueueAgentEnv(double, queue));
    agents.push(second);
    await until(
      'the second agent to register and broadcast the 7 samples',
      () => new Set(registered().map((n) => n.tf_filename)).size === 7,
      90_000,
      () =>
        `${double.fastmonFiles.length} rows, ${registered().length} broadcasts\n${second.out.stderr.slice(-2000)}`,
    );
    expect(new Set(double.fastmonFiles.map((r) => r.tf_filename)).size).toBe(7);
    expect(double.fastmonFiles.every((r) => r.stf_file === STF)).toBe(true);
    // All by the second agent: the first broadcast nothing of it.
    const processedBy = [...new Set(registered().map((n) => n.processed_by))];
    expect(processedBy).toHaveLength(1);
    expect(processedBy).not.toContain(firstName);
    second.proc.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);
});
