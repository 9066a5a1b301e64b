import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { agentTestBed } from '../support/agent.js';
import type { Collector } from '../support/broker.js';
import { sharedQueue, until } from '../support/shared-queue.js';

const RUN = '108000';

const bed = agentTestBed({ label: 'alo', run: RUN, stfs: 20, broadcastOut: true });

const { stfName: name } = bed;

function stfReady(seq: number) {
  return { msg_type: 'stf_ready', filename: name(seq), run_id: RUN, state: 'run', substate: 'physics' };
}

describe('at-least-once consumption', () => {
  it('a durable subscription keeps the stf_ready published while the agent was down', async () => {
    const env = {
      FASTMON_CLIENT_ID: `fastmon-durable-${randomUUID().slice(0, 8)}`,
      FASTMON_DURABLE_SUBSCRIPTION: 'fastmon',
    };
    const first = await bed.agent(env);
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => c.bodies('tf_file_registered').length === 7, 15_000, 'the first STF');
    await first.stop();
    bed.running = [];
    // Down: these two wait on the broker.
    await bed.peer.publish(bed.topic, stfReady(2));
    await bed.peer.publish(bed.topic, stfReady(3));
    await bed.agent(env);
    await bed.seen.waitFor(
      (c) => c.bodies('tf_file_registered').length === 21,
      15_000,
      'the STFs published while down',
    );
    expect(bed.double.fastmonFiles).toHaveLength(21);
  });

  it('retries a message whose samples could not be registered, and acknowledges it only then', async () => {
    const env = {
      FASTMON_CLIENT_ID: `fastmon-retry-${randomUUID().slice(0, 8)}`,
      FASTMON_DURABLE_SUBSCRIPTION: 'fastmon',
      FASTMON_MONITOR_RETRIES: '0',
    };
    const a = await bed.agent(env);
    bed.double.fail({
      path: '/fastmon-files/',
      method: 'POST',
      status: 400,
      body: { detail: 'passing trouble' },
      times: 3,
    });
    await bed.peer.publish(bed.topic, stfReady(4));
    await bed.seen.waitFor(
      (c) => c.bodies('tf_file_registered').length >= 7,
      20_000,
      'the samples after the retry',
    );
    expect(new Set(bed.double.fastmonFiles.map((r) => r.tf_filename)).size).toBe(7);
    expect(a.logs.find((r) => r.msg === 'message not fully handled; retrying')).toBeDefined();
    // Acknowledged: a restart on the same durable subscription gets nothing again.
    await a.stop();
    bed.running = [];
    bed.double.clearRequests();
    const b = await bed.agent(env);
    await bed.peer.publish(bed.topic, stfReady(5)); // a marker behind anything the broker would redeliver
    const marker = (c: Collector) =>
      c.bodies('tf_file_registered').filter((n) => n.stf_filename === name(5)).length;
    await bed.seen.waitFor((c) => marker(c) === 7, 20_000, 'the marker');
    const posted = bed.double.requests.filter((r) => r.method === 'POST' && r.path.includes('fastmon-files'));
    expect(posted).toHaveLength(7);
    expect(b.agent.totals.stfsDuplicate).toBe(0);
  });

  it('shares a queue between competing agents, and swf-monitor still ends with each sample once', async () => {
    // A queue as docs/scaling-out.md sets one up on each broker. A plain `/queue/x` is no shared queue
    // on Artemis' default acceptor (no anycast prefix): every subscriber gets its own copy.
    const { topic, subscription } = sharedQueue('alo');
    const a = await bed.agent({ FASTMON_SUBSCRIPTION: subscription, FASTMON_PREFETCH: '1' });
    const b = await bed.agent({ FASTMON_SUBSCRIPTION: subscription, FASTMON_PREFETCH: '1' });
    for (let seq = 1; seq <= 20; seq++) await bed.peer.publish(topic, stfReady(seq));
    // A few announced twice (the same STF sent again): still one row per sample.
    for (let seq = 1; seq <= 3; seq++) await bed.peer.publish(topic, stfReady(seq));
    await bed.seen.waitFor(
      (c) => new Set(c.bodies('tf_file_registered').map((n) => n.tf_filename)).size === 140,
      30_000,
      'all samples',
    );
    expect(bed.double.fastmonFiles).toHaveLength(140);
    expect(new Set(bed.double.fastmonFiles.map((r) => r.tf_filename)).size).toBe(140);
    const byAgent = new Map<unknown, number>();
    for (const n of bed.seen.bodies('tf_file_registered'))
      byAgent.set(n.processed_by, (byAgent.get(n.processed_by) ?? 0) + 1);
    // Competing, not each taking a copy: the two share the 23 deliveries (the last duplicates may
    // still be in hand once the 140 samples are out). Copies would show within the settling time.
    const received = () => a.agent.totals.stfsReceived + b.agent.totals.stfsReceived;
    await until('the 23 deliveries handled', () => received() >= 23, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(received()).toBe(23);
    expect(byAgent.get(a.agent.agentName)).toBeGreaterThan(0);
    expect(byAgent.get(b.agent.agentName)).toBeGreaterThan(0);
  });

  it('sends refused messages to the dead-letter destination, persistent, with the reason, and carries on', async () => {
    const deadLetters = await bed.peer.collect(`${bed.topic}.dlq`);
    const a = await bed.agent({ FASTMON_DEAD_LETTER: `${bed.topic}.dlq` });
    await bed.peer.publish(bed.topic, '{"msg_type": "stf_ready", "filename": ');
    await bed.peer.publish(bed.topic, { msg_type: 'stf_ready', filename: name(5), size_bytes: -3 });
    await bed.peer.publish(bed.topic, `{"msg_type":"stf_ready","pad":"${'x'.repeat(1_100_000)}"}`);
    await bed.peer.publish(bed.topic, stfReady(6));
    await bed.seen.waitFor((c) => c.bodies('tf_file_registered').length === 7, 15_000, 'the good STF');
    await deadLetters.waitFor((c) => c.messages.length === 3, 10_000, 'three dead letters');
    const codes = deadLetters.bodies().map((b) => b.code);
    expect(codes).toEqual(['MESSAGE_NOT_JSON', 'MESSAGE_INVALID', 'MESSAGE_TOO_LARGE']);
    for (const letter of deadLetters.bodies()) {
      expect(letter).toMatchObject({ msg_type: 'fastmon_dead_letter', processed_by: a.agent.agentName });
      expect(String(letter.reason).length).toBeGreaterThan(10);
    }
    // Persistent: the only trace of a refused message survives a broker restart.
    expect(deadLetters.messages.map((m) => m.headers.persistent)).toEqual(['true', 'true', 'true']);
    expect(String(deadLetters.bodies()[0]?.body)).toBe('{"msg_type": "stf_ready", "filename": ');
  });
});
