import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { FrameFilterLimits } from '../../src/messaging/frame-filter.js';
import { sampleStf } from '../../workers/sampler.js';
import { agentTestBed, type TestAgent } from '../support/agent.js';
import { brokerKind, type Collector, TestPeer } from '../support/broker.js';

const RUN = '102001';

const bed = agentTestBed({
  label: 'hostile',
  run: RUN,
  stfs: 9,
  namespaced: true,
  env: { FASTMON_SEED: 'test-seed' },
});

const { stfName } = bed;

function stfReady(seq: number, extra: Record<string, unknown> = {}) {
  return {
    msg_type: 'stf_ready',
    namespace: bed.namespace,
    filename: stfName(seq),
    run_id: RUN,
    state: 'run',
    substate: 'physics',
    ...extra,
  };
}

// Agent ids restart at 1 with every monitor double: a unique client-id keeps test files that
// run at once from refusing each other's connections ("already connected").
function agent(env: Record<string, string> = {}, frameLimits?: FrameFilterLimits): Promise<TestAgent> {
  return bed.agent({ FASTMON_CLIENT_ID: `fastmon-hostile-${randomUUID()}`, ...env }, { frameLimits });
}

async function waitUntil(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const registered = (c: Collector) => c.bodies('tf_file_registered');
const value = async (m: { get(): Promise<{ values: { value: number }[] }> }) =>
  (await m.get()).values.reduce((sum, v) => sum + v.value, 0);

describe('the agent under hostile input, through the real broker', () => {
  it('samples a valid stf_ready that carries a 2 KB header or 70 headers, with no reconnect', async () => {
    const a = await agent();
    const many = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`x-extra-${i}`, String(i)]));
    await bed.peer.publish(bed.topic, stfReady(1), { 'x-trace': 't'.repeat(2048) });
    await bed.peer.publish(bed.topic, stfReady(2), many);
    await bed.seen.waitFor((c) => registered(c).length === 14, 15_000, 'both STFs');
    expect(bed.double.fastmonFiles).toHaveLength(14);
    expect(await value(a.agent.metrics.reconnects)).toBe(0);
    expect(
      a.logs.find((r) => r.msg === 'broker connection lost or refused; reconnecting')?.err,
    ).toBeUndefined();
  });

  it('refuses a frame over the frame limits alone: coded error with its id and the limit, dead-lettered, no drop', async () => {
    // ActiveMQ Classic refuses SEND frames with header lines over 10 KiB, far below the agent's
    // limits, so the limits are lowered here to reach them through the broker.
    const deadLetters = await bed.peer.collect(`${bed.topic}.dlq`);
    const limits = { maxHeaderLineBytes: 1024, maxHeaders: 100, maxHeaderBytes: 65_536 };
    const a = await agent({ FASTMON_DEAD_LETTER: `${bed.topic}.dlq` }, limits);
    await bed.peer.publish(bed.topic, stfReady(1), { 'x-trace': 't'.repeat(4000) });
    await bed.peer.publish(bed.topic, stfReady(2));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the STF after the refused frame');
    await deadLetters.waitFor((c) => c.messages.length === 1, 10_000, 'the dead letter');
    const logged = a.logs.find((r) => r.code === 'MESSAGE_HEADERS_TOO_LARGE');
    expect(logged?.msgId).toBeTruthy();
    expect(String(logged?.msg)).toMatch(/header x-trace of \d+ bytes over the 1024-byte line limit dropped/);
    const letter = deadLetters.bodies()[0];
    expect(letter).toMatchObject({
      msg_type: 'fastmon_dead_letter',
      code: 'MESSAGE_HEADERS_TOO_LARGE',
      message_id: logged?.msgId,
    });
    expect(String(letter?.reason)).toMatch(/1024-byte line limit/);
    expect(JSON.parse(String(letter?.body))).toMatchObject({ filename: stfName(1) });
    expect(bed.double.fastmonFiles.every((r) => r.stf_file === stfName(2))).toBe(true);
    expect(await value(a.agent.metrics.reconnects)).toBe(0);
    expect((await a.agent.metrics.messagesRejected.get()).values[0]?.labels.code).toBe(
      'MESSAGE_HEADERS_TOO_LARGE',
    );
  });

  it('handles a 100 KB header and 5,000 headers as each broker passes them on', async () => {
    const deadLetters = await bed.peer.collect(`${bed.topic}.dlq`);
    const a = await agent({ FASTMON_DEAD_LETTER: `${bed.topic}.dlq` });
    const many = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`x-h${i}`, String(i)]));
    if (brokerKind() === 'classic') {
      // ActiveMQ Classic refuses such SEND frames itself (10 KiB lines, 1,000 headers): the producer
      // gets an ERROR and no receipt, and nothing reaches the agent.
      const refused = async (headers: Record<string, string>) => {
        const producer = await TestPeer.connect();
        const sent = await Promise.race([
          producer.publish(bed.topic, stfReady(1), headers).then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
        ]);
        await producer.close();
        return !sent;
      };
      expect(await refused({ 'x-trace': 't'.repeat(100_000) })).toBe(true);
      expect(await refused(many)).toBe(true);
    } else {
      // Artemis passes both on; each is refused alone, with the limit, and dead-lettered.
      await bed.peer.publish(bed.topic, stfReady(1), { 'x-trace': 't'.repeat(100_000) });
      await bed.peer.publish(bed.topic, stfReady(3), many);
      await deadLetters.waitFor((c) => c.messages.length === 2, 15_000, 'two dead letters');
      const reasons = deadLetters.bodies().map((b) => String(b.reason));
      expect(reasons[0]).toMatch(/header x-trace of \d+ bytes over the 65536-byte line limit dropped/);
      expect(reasons[1]).toMatch(/headers past the 1100-header limit dropped/);
      expect(deadLetters.bodies().map((b) => b.code)).toEqual([
        'MESSAGE_HEADERS_TOO_LARGE',
        'MESSAGE_HEADERS_TOO_LARGE',
      ]);
    }
    await bed.peer.publish(bed.topic, stfReady(2));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the valid STF after them');
    expect(bed.double.fastmonFiles.every((r) => r.stf_file === stfName(2))).toBe(true);
    expect(await value(a.agent.metrics.reconnects)).toBe(0);
  });

  it.each([
    ['run_id', { run_id: '7'.repeat(65_000) }],
    ['execution_id', { execution_id: 'e'.repeat(300) }],
    ['namespace', { namespace: 'n'.repeat(300) }],
    ['filename_base', { filename: `${'f'.repeat(300)}.stf` }],
    ['checksum', { checksum: `ad:${'1'.repeat(200)}` }],
  ])(
    'refuses an stf_ready whose %s is over its limit with MESSAGE_INVALID naming the field',
    async (field, extra) => {
      const a = await agent();
      await bed.peer.publish(bed.topic, stfReady(1, extra));
      await bed.peer.publish(bed.topic, stfReady(2));
      await bed.seen.waitFor(
        (c) => registered(c).length === 7,
        15_000,
        'the valid STF after the refused one',
      );
      const refusal = a.logs.find((r) => r.code === 'MESSAGE_INVALID');
      expect(String(refusal?.msg)).toMatch(new RegExp(`${field} is \\d+ characters, over the limit of \\d+`));
      expect(refusal?.details).toMatchObject({ field });
      expect(refusal?.msgId).toBeTruthy();
      // Nothing it carried went out: every broadcast is small.
      const ours = bed.seen.messages.filter((m) => m.headers.msg_type !== undefined);
      expect(ours.length).toBeGreaterThanOrEqual(7);
      for (const m of ours) expect(JSON.stringify(m).length).toBeLessThan(4096);
      expect(await value(a.agent.metrics.reconnects)).toBe(0);
    },
  );

  it('counts unknown message types under one "other" label, so /metrics stays small', async () => {
    const a = await agent();
    const junk = Array.from({ length: 300 }, (_, i) => ({
      msg_type: `junk-${i}-${'q'.repeat(50)}`,
      namespace: bed.namespace,
    }));
    const huge = Array.from({ length: 5 }, (_, i) => ({
      msg_type: `${i}${'Q'.repeat(128 * 1024)}`,
      namespace: bed.namespace,
    }));
    await Promise.all([...junk, ...huge].map((m) => bed.peer.publish(bed.topic, m)));
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 20_000, 'the valid STF');
    const counted = await a.agent.metrics.messages.get();
    expect(counted.values.find((v) => v.labels.msg_type === 'other')?.value).toBe(300);
    expect(counted.values.map((v) => v.labels.msg_type).sort()).toEqual(['other', 'stf_ready']);
    expect(a.logs.records().filter((r) => r.code === 'MESSAGE_INVALID')).toHaveLength(5);
    const metrics = await (await fetch(`http://127.0.0.1:${a.agent.httpPort}/metrics`)).text();
    expect(metrics.length).toBeLessThan(32 * 1024);
    expect(metrics).not.toContain('junk-');
  }, 60_000);

  it('closes a run silent for the idle timeout with a final summary that says it timed out', async () => {
    const a = await agent({ FASTMON_RUN_IDLE_TIMEOUT_S: '1', FASTMON_SUMMARY_INTERVAL_S: '0.4' });
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor(
      (c) => c.bodies('fastmon_summary').some((s) => s.final === true),
      15_000,
      'the final summary of the silent run',
    );
    const final = bed.seen.bodies('fastmon_summary').find((s) => s.final === true);
    expect(final).toMatchObject({
      run_id: RUN,
      timed_out: true,
      final: true,
      stfs_sampled: 1,
      tf_files_registered: 7,
    });
    expect(
      bed.seen
        .bodies('fastmon_summary')
        .filter((s) => s.timed_out === false)
        .every((s) => s.final === false),
    ).toBe(true);
    expect(await value(a.agent.metrics.runsTimedOut)).toBe(1);
    expect(
      a.logs.find((r) => r.msg === 'run closed: no message for the idle timeout (its end_run never came)'),
    ).toMatchObject({ run: RUN });
    // Closed means no more summaries for it.
    const before = bed.seen.bodies('fastmon_summary').length;
    await new Promise((r) => setTimeout(r, 1200));
    expect(bed.seen.bodies('fastmon_summary').length).toBe(before);
  });

  it('tracks at most agent.max_runs runs, counts the refused ones, and still samples their STFs', async () => {
    const runs = ['102101', '102102', '102103', '102104'];
    for (const run of runs) bed.double.addStfFile({ stf_filename: stfName(1, run), run_number: Number(run) });
    const a = await agent({ FASTMON_MAX_RUNS: '2' });
    for (const run of runs)
      await bed.peer.publish(bed.topic, stfReady(1, { run_id: run, filename: stfName(1, run) }));
    await bed.seen.waitFor((c) => registered(c).length === 28, 20_000, 'every STF of every run');
    expect(a.agent.runs.size).toBe(2);
    expect(await value(a.agent.metrics.runsRefused)).toBe(2);
    expect(a.logs.find((r) => String(r.msg).startsWith('too many runs tracked at once'))).toMatchObject({
      maxRuns: 2,
    });
  });

  it('retries an outbox entry whose row cannot be read after "already exists" until it is announced', async () => {
    const a = await agent({ FASTMON_MONITOR_RETRIES: '0' });
    bed.double.fail({ path: '/fastmon-files/', method: 'POST', status: 500 });
    await bed.peer.publish(bed.topic, stfReady(2));
    await waitUntil(
      async () => (await value(a.agent.metrics.outboxDepth)) === 7,
      'seven samples in the outbox',
    );
    // The rows got in after all (an answer lost on the way back), and the lookup of a row fails
    // a few times (a proxy answering 404): the entries must wait, not be dropped unannounced.
    const samples = sampleStf({
      seed: 'test-seed',
      runId: RUN,
      stfFilename: stfName(2),
      tfCount: 1000,
      stfSizeBytes: null,
      settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    });
    for (const s of samples)
      bed.double.addFastmonFile({
        stf_file: stfName(2),
        tf_filename: s.tfFilename,
        tf_first: s.tfFirst,
        tf_last: s.tfLast,
        tf_count: s.tfCount,
      });
    bed.double.clearFaults();
    bed.double.fail({ path: '/fastmon-files/?', method: 'GET', status: 404, times: 3 });
    await bed.seen.waitFor((c) => registered(c).length === 7, 30_000, 'all seven samples announced');
    expect(new Set(registered(bed.seen).map((n) => n.tf_filename))).toEqual(
      new Set(samples.map((s) => s.tfFilename)),
    );
    expect(bed.double.requests.filter((r) => r.method === 'GET' && r.status === 404)).toHaveLength(3);
    expect(a.logs.find((r) => String(r.msg).startsWith('outbox entry refused'))).toBeUndefined();
    expect(a.logs.find((r) => r.msg === 'outbox replay failed; retrying the same entry')).toMatchObject({
      code: 'MONITOR_UNAVAILABLE',
    });
    await waitUntil(async () => (await value(a.agent.metrics.outboxDepth)) === 0, 'the outbox to empty');
  });
});
