import { mkdirSync, mkdtempSync, readFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sampleStf } from '../../workers/sampler.js';
import { adler32, adlerString } from '../../workers/stf-format.js';
import { writeStf } from '../../workers/stf-writer.js';
import { agentTestBed } from '../support/agent.js';
import type { Collector } from '../support/broker.js';

const RUN = '101993';

const bed = agentTestBed({
  label: 'agent',
  run: RUN,
  stfs: 9,
  namespaced: true,
  env: { FASTMON_SEED: 'test-seed' },
});

const { stfName } = bed;

/** The example data agent's per-file stf_ready (docs/testbed-interface.md, "stf_ready"): size and checksum null. */
function stfReady(seq: number, extra: Record<string, unknown> = {}) {
  return {
    msg_type: 'stf_ready',
    namespace: bed.namespace,
    sender: 'data-agent-test-1',
    filename: stfName(seq),
    run_id: RUN,
    file_url: null,
    checksum: null,
    size_bytes: null,
    start: null,
    end: null,
    state: 'run',
    substate: 'physics',
    sequence: seq,
    ...extra,
  };
}

function lifecycle(msgType: string, extra: Record<string, unknown> = {}) {
  return {
    msg_type: msgType,
    namespace: bed.namespace,
    execution_id: 'stf_datataking-test-0001',
    run_id: RUN,
    ...extra,
  };
}

const registered = (c: Collector) => c.bodies('tf_file_registered');

describe('the agent against ActiveMQ and an swf-monitor double', () => {
  it('turns a run lifecycle and a stream of stf_ready into FastMonFile rows and one tf_file_registered per sample', async () => {
    const a = await bed.agent();
    await bed.peer.publish(bed.topic, lifecycle('run_imminent', { state: 'beam', substate: 'not_ready' }));
    await bed.peer.publish(bed.topic, lifecycle('start_run', { state: 'run', substate: 'physics' }));
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, stfReady(2, { size_bytes: 2_000_000_000, checksum: 'ad:3915264619' }));
    await bed.peer.publish(bed.topic, stfReady(3, { run_id: Number(RUN) })); // daqsim's integer run_id
    await bed.peer.publish(bed.topic, lifecycle('end_run', { total_stf_files: 3 }));
    await bed.seen.waitFor((c) => c.bodies('fastmon_status').length === 1, 20_000, 'fastmon_status');

    expect(bed.double.fastmonFiles).toHaveLength(21);
    const notes = registered(bed.seen);
    expect(notes).toHaveLength(21);
    for (const seq of [1, 2, 3]) {
      const size = seq === 2 ? 2_000_000_000 : null;
      const expected = sampleStf({
        seed: 'test-seed',
        runId: RUN,
        stfFilename: stfName(seq),
        tfCount: 1000,
        stfSizeBytes: size,
        settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
      });
      for (const s of expected) {
        const row = bed.double.fastmonFiles.find((r) => r.tf_filename === s.tfFilename);
        expect(row, s.tfFilename).toMatchObject({
          stf_file: stfName(seq),
          tf_first: s.tfFirst,
          tf_last: s.tfLast,
          tf_count: s.tfCount,
          file_size_bytes: s.fileSizeBytes,
          status: 'registered',
        });
        const note = notes.find((n) => n.tf_filename === s.tfFilename);
        expect(note, s.tfFilename).toMatchObject({
          msg_type: 'tf_file_registered',
          processed_by: a.agent.agentName,
          sender: a.agent.agentName,
          namespace: bed.namespace,
          run_id: RUN,
          execution_id: null, // the example data agent's stf_ready carries none
          stf_filename: stfName(seq),
          tf_file_id: row?.tf_file_id,
          tf_first: s.tfFirst,
          tf_last: s.tfLast,
          tf_count: s.tfCount,
          file_size_bytes: s.fileSizeBytes,
          status: 'registered',
        });
        expect(typeof note?.timestamp).toBe('string');
        expect(note).not.toHaveProperty('agent_name');
      }
    }
    // Broadcasts carry a msg_type header, and the agent's selector kept them from coming back to it.
    expect(bed.seen.messages.find((m) => m.body.msg_type === 'tf_file_registered')?.headers.msg_type).toBe(
      'tf_file_registered',
    );
    expect(await a.agent.metrics.messages.get()).not.toMatchObject({
      values: expect.arrayContaining([
        expect.objectContaining({ labels: { msg_type: 'tf_file_registered' } }),
      ]),
    });

    const status = bed.seen.bodies('fastmon_status')[0];
    expect(status).toMatchObject({
      msg_type: 'fastmon_status',
      status: 'completed',
      run_id: RUN,
      execution_id: 'stf_datataking-test-0001',
      stfs_received: 3,
      stfs_sampled: 3,
      tf_files_registered: 21,
      tf_files_failed: 0,
      processed_by: a.agent.agentName,
    });
    expect(status).not.toHaveProperty('agent_name');
  });

  it('registers nothing new when the same stf_ready arrives again, in the same agent or after a restart', async () => {
    const first = await bed.agent();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, '7 notifications');
    const ids = bed.double.fastmonFiles.map((r) => r.tf_file_id).sort();

    const postsBefore = bed.double.requests.filter(
      (r) => r.method === 'POST' && r.path.includes('fastmon-files'),
    ).length;
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, stfReady(2)); // a marker: once it is done, the duplicate was handled before it
    await bed.seen.waitFor((c) => registered(c).length === 14, 15_000, 'the marker STF');
    expect(bed.double.fastmonFiles).toHaveLength(14);
    const postsAfter = bed.double.requests.filter(
      (r) => r.method === 'POST' && r.path.includes('fastmon-files'),
    ).length;
    expect(postsAfter - postsBefore).toBe(7); // only the marker's samples
    expect(
      first.logs.find((r) => r.msg === 'stf_ready for an STF already handled: nothing new to register'),
    ).toBeDefined();
    // Every delivery is received; the repeat is counted as a duplicate, not sampled again (README).
    await waitUntil(() => first.agent.totals.stfsSampled === 2, 'the counts to settle');
    expect(first.agent.totals).toMatchObject({ stfsReceived: 3, stfsSampled: 2, stfsDuplicate: 1 });

    await first.stop();
    bed.running = [];
    const second = await bed.agent();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 21, 15_000, 'notifications after the restart');
    expect(bed.double.fastmonFiles).toHaveLength(14);
    const renotified = registered(bed.seen).slice(14);
    // The restarted agent re-announces the existing rows (at-least-once), under their original ids.
    expect(renotified.map((n) => n.tf_file_id).sort()).toEqual(ids);
    expect(renotified.every((n) => n.processed_by === second.agent.agentName)).toBe(true);
  });

  it('ignores messages of another namespace and processes those without one', async () => {
    const a = await bed.agent();
    await bed.peer.publish(bed.topic, stfReady(1, { namespace: 'someone-else' }));
    await bed.peer.publish(bed.topic, stfReady(2, { namespace: undefined }));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the STF without namespace');
    expect(bed.double.fastmonFiles.every((r) => r.stf_file === stfName(2))).toBe(true);
    expect((await a.agent.metrics.messagesOtherNamespace.get()).values[0]?.value).toBe(1);
  });

  it('logs monitor 400s clearly, keeps samples through a 500 outage in the outbox, and carries on', async () => {
    const a = await bed.agent({ FASTMON_MONITOR_RETRIES: '1' });
    // An STF swf-monitor does not know: 400, quoted in the log, retried a few times, then acknowledged.
    await bed.peer.publish(bed.topic, stfReady(404, { filename: 'swf.101993.000404.stf' }));
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the next STF after a 400');
    const rejected = a.logs.find((r) => r.code === 'MONITOR_REJECTED');
    expect(String(rejected?.msg)).toMatch(
      /TF sample not registered: swf-monitor rejected POST \/fastmon-files\/ with HTTP 400: .*does not exist/,
    );
    expect(rejected?.stf).toBe('swf.101993.000404.stf');
    // The unknown STF is tried five times in all (7 refused samples each), then acknowledged with the
    // error. Wait for the last refusal first: an attempt of it during the outage below would put its
    // samples in the outbox too.
    const refusals = () =>
      a.logs.records().filter((r) => r.code === 'MONITOR_REJECTED' && r.stf === 'swf.101993.000404.stf')
        .length;
    await waitUntil(() => refusals() === 35, 'the unknown STF to be refused five times', 20_000);

    // An outage (500 after the retries): the samples go to the outbox, the message is acknowledged,
    // and they are registered and announced, in order, once swf-monitor answers again.
    bed.double.fail({ path: '/fastmon-files/', method: 'POST', status: 500 });
    await bed.peer.publish(bed.topic, stfReady(2));
    await waitUntil(
      () =>
        a.logs.records().filter((r) => String(r.msg).startsWith('TF sample put in the outbox')).length === 7,
      'seven samples in the outbox',
    );
    expect(String(a.logs.find((r) => String(r.msg).startsWith('TF sample put in the outbox'))?.msg)).toMatch(
      /failed after 2 attempt\(s\): HTTP 500/,
    );
    expect((await a.agent.metrics.outboxDepth.get()).values[0]?.value).toBe(7);
    expect(bed.double.fastmonFiles.filter((r) => r.stf_file === stfName(2))).toHaveLength(0);
    bed.double.clearFaults();
    await bed.peer.publish(bed.topic, stfReady(3));
    await bed.seen.waitFor((c) => registered(c).length === 21, 30_000, 'the outbox drained and the next STF');
    expect(bed.double.fastmonFiles.filter((r) => r.stf_file === stfName(2))).toHaveLength(7);
    // Replayed in the order they went into the outbox.
    const appended = a.logs
      .records()
      .filter((r) => String(r.msg).startsWith('TF sample put in the outbox'))
      .map((r) => r.tf_filename);
    const stf2 = registered(bed.seen).filter((n) => n.stf_filename === stfName(2));
    expect(stf2.map((n) => n.tf_filename)).toEqual(appended);
    await waitUntil(
      async () => (await a.agent.metrics.outboxDepth.get()).values[0]?.value === 0,
      'the outbox to empty',
    );
  });

  it('samples in physics only: skips STFs during pause_run and resumes with resume_run', async () => {
    const a = await bed.agent();
    await bed.peer.publish(bed.topic, lifecycle('start_run', { state: 'run', substate: 'physics' }));
    await bed.peer.publish(bed.topic, lifecycle('pause_run', { state: 'run', substate: 'standby' }));
    await bed.peer.publish(bed.topic, stfReady(1, { state: undefined, substate: undefined }));
    await bed.peer.publish(bed.topic, stfReady(2, { state: 'run', substate: 'standby' }));
    await bed.peer.publish(bed.topic, lifecycle('resume_run', { state: 'run', substate: 'physics' }));
    await bed.peer.publish(bed.topic, stfReady(3, { state: undefined, substate: undefined }));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the STF after resume_run');
    expect(new Set(bed.double.fastmonFiles.map((r) => r.stf_file))).toEqual(new Set([stfName(3)]));
    await waitUntil(() => a.agent.runs.get(RUN)?.counts.stfsSampled === 1, 'the counts to settle');
    expect(a.agent.runs.get(RUN)?.counts).toMatchObject({ stfsReceived: 3, stfsSkipped: 2, stfsSampled: 1 });
    expect(a.logs.find((r) => r.msg === 'STF skipped' && r.stf === stfName(1))?.reason).toBe(
      `run ${RUN} is run/standby`,
    );
  });

  it('counts the per-run stf_ready without filename and refuses garbage without stopping', async () => {
    const a = await bed.agent();
    await bed.peer.publish(bed.topic, {
      msg_type: 'stf_ready',
      run_id: RUN,
      namespace: bed.namespace,
      req_id: 1,
    });
    await bed.peer.publish(bed.topic, '{"msg_type": "stf_ready", "filename": ');
    await bed.peer.publish(bed.topic, {
      msg_type: 'stf_ready',
      namespace: bed.namespace,
      filename: stfName(1),
      size_bytes: 'huge',
    });
    await bed.peer.publish(bed.topic, { msg_type: 'slice', namespace: bed.namespace, content: {} });
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the valid STF after garbage');
    expect(
      a.logs.find((r) => r.msg === 'stf_ready without filename (per-run announcement): nothing to sample'),
    ).toBeDefined();
    expect(a.logs.find((r) => r.code === 'MESSAGE_NOT_JSON')).toBeDefined();
    expect(String(a.logs.find((r) => r.code === 'MESSAGE_INVALID')?.msg)).toMatch(/size_bytes/);
    const rejected = await a.agent.metrics.messagesRejected.get();
    expect(rejected.values.map((v) => v.labels.code).sort()).toEqual(['MESSAGE_INVALID', 'MESSAGE_NOT_JSON']);
    expect(a.agent.totals.stfsWithoutFile).toBe(1);
  });

  it('reports to swf-monitor like a testbed agent: subscriber, heartbeats, EXITED on stop; never logs secrets', async () => {
    const a = await bed.agent();
    await waitUntil(() => bed.double.heartbeats.length >= 1, 'first heartbeat');
    expect(a.agent.agentName).toMatch(/^fastmon-agent-.+-\d+$/);
    expect(bed.double.subscribers.map((s) => s.subscriber_name)).toContain(
      `${a.agent.agentName}-${bed.topic}`,
    );
    expect(bed.double.heartbeats[0]?.body).toMatchObject({
      instance_name: a.agent.agentName,
      agent_type: 'fastmon',
      status: 'OK',
      mq_connected: true,
      namespace: bed.namespace,
      pid: process.pid,
    });
    await a.stop();
    bed.running = [];
    const last = bed.double.heartbeats.at(-1)?.body;
    expect(last).toMatchObject({
      instance_name: a.agent.agentName,
      status: 'EXITED',
      operational_state: 'EXITED',
    });
    expect(a.logs.text()).not.toContain(bed.double.token);
  });
});

describe('binary STFs with TF extraction', () => {
  it('extracts each sample to a file and records its real size and checksum; a damaged STF is skipped with its reason', async () => {
    const top = mkdtempSync(path.join(tmpdir(), 'fastmon-extract-'));
    const data = path.join(top, 'data');
    const out = path.join(top, 'out');
    mkdirSync(data);
    for (const seq of [1, 2, 3]) {
      await writeStf(
        path.join(data, stfName(seq)),
        {
          runNumber: BigInt(RUN),
          stfSequence: BigInt(seq),
          state: 'run',
          substate: 'physics',
          startNs: 0n,
          endNs: 0n,
          tfLengths: Array.from({ length: 200 }, (_, i) => 1000 + i),
        },
        (tf, offset, into) => {
          into.fill((tf + offset + seq) & 0xff);
        },
      );
    }
    truncateSync(path.join(data, stfName(2)), 5000); // cut short, as by a failed transfer
    const a = await bed.agent({ FASTMON_DATA_ROOTS: data, FASTMON_OUTPUT_DIR: out });
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, stfReady(2));
    await bed.peer.publish(bed.topic, stfReady(3));
    await bed.seen.waitFor((c) => registered(c).length === 14, 15_000, 'the samples of the two good STFs');
    expect(bed.double.fastmonFiles).toHaveLength(14);
    for (const row of bed.double.fastmonFiles) {
      const bytes = readFileSync(path.join(out, RUN, row.tf_filename));
      expect(row.file_size_bytes).toBe(bytes.length);
      expect(row.checksum).toBe(adlerString(adler32(bytes)));
      expect(row.tf_count).toBeLessThanOrEqual(200);
      const note = registered(bed.seen).find((n) => n.tf_filename === row.tf_filename);
      expect(note).toMatchObject({
        checksum: row.checksum,
        file_size_bytes: row.file_size_bytes,
        tf_file_id: row.tf_file_id,
      });
    }
    const damaged = a.logs.find((r) => r.code === 'STF_TRUNCATED');
    expect(String(damaged?.msg)).toContain(`STF not sampled: ${path.join(data, stfName(2))}`);
    expect(damaged?.stf).toBe(stfName(2));
    await waitUntil(
      () => a.agent.totals.stfsFailed === 1 && a.agent.totals.stfsSampled === 2,
      'the counts to settle',
    );
  });
});

describe('periodic summaries', () => {
  it('publishes fastmon_summary per active run every cycle, and a final one on end_run before fastmon_status', async () => {
    await bed.agent({ FASTMON_SUMMARY_INTERVAL_S: '0.3' });
    await bed.peer.publish(bed.topic, lifecycle('start_run', { state: 'run', substate: 'physics' }));
    await bed.peer.publish(bed.topic, stfReady(1, { size_bytes: 7_000_000 }));
    await bed.peer.publish(bed.topic, stfReady(2, { size_bytes: 7_000_000 }));
    await bed.seen.waitFor(
      (c) => c.bodies('fastmon_summary').some((b) => b.tf_files_registered === 14),
      15_000,
      'a summary with both STFs',
    );
    const cycle = bed.seen.bodies('fastmon_summary').find((b) => b.tf_files_registered === 14) ?? {};
    expect(cycle).toMatchObject({
      run_id: RUN,
      final: false,
      stfs_seen: 2,
      stfs_sampled: 2,
      bytes_sampled: expect.any(Number),
    });
    expect(cycle).not.toHaveProperty('status');
    expect(cycle).not.toHaveProperty('agent_name');
    const histogram = cycle.sample_size_histogram as { edges_bytes: number[]; counts: number[] };
    const rates = cycle.rates as Record<string, number>;
    expect(histogram.counts.reduce((a, b) => a + b, 0)).toBe(14);
    expect(histogram.edges_bytes).toHaveLength(histogram.counts.length);
    expect(Object.keys(rates)).toEqual(['stfs_per_s', 'tf_files_per_s', 'bytes_per_s']);
    await bed.peer.publish(bed.topic, lifecycle('end_run', { total_stf_files: 2 }));
    await bed.seen.waitFor((c) => c.bodies('fastmon_status').length === 1, 15_000, 'fastmon_status');
    const types = bed.seen
      .bodies()
      .map((b) => (b.msg_type === 'fastmon_summary' ? `summary${b.final ? ':final' : ''}` : b.msg_type));
    const finalAt = types.indexOf('summary:final');
    expect(finalAt).toBeGreaterThan(-1);
    expect(finalAt).toBeLessThan(types.indexOf('fastmon_status'));
    expect(bed.seen.bodies('fastmon_summary').find((b) => b.final)).toMatchObject({
      tf_files_registered: 14,
      stfs_sampled: 2,
    });
  });
});

describe('operations', () => {
  it('serves /healthz and Prometheus /metrics with the counts of what it did', async () => {
    const a = await bed.agent();
    const base = `http://127.0.0.1:${a.agent.httpPort}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      ok: true,
      broker: 'connected',
      registrar: 'monitor',
      agent: a.agent.agentName,
    });
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, stfReady(2, { state: 'run', substate: 'standby' }));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, '7 notifications');
    // Both STFs: the first can be sampled and announced before the second is even delivered.
    await waitUntil(
      () => a.agent.totals.stfsSampled === 1 && a.agent.totals.stfsSkipped === 1,
      'the counts to settle',
    );
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^fastmon_stfs_total\{outcome="sampled"\} 1$/m);
    expect(metrics).toMatch(/^fastmon_stfs_total\{outcome="skipped"\} 1$/m);
    expect(metrics).toMatch(/^fastmon_tfs_registered_total\{created="true"\} 7$/m);
    expect(metrics).toMatch(/^fastmon_messages_total\{msg_type="stf_ready"\} 2$/m);
    expect(metrics).toMatch(/^fastmon_broker_connected 1$/m);
    expect(metrics).toMatch(
      /^fastmon_monitor_request_seconds_count\{method="POST",endpoint="\/fastmon-files\/",status="201"\} 7$/m,
    );
    expect(metrics).toMatch(/^fastmon_stfs_in_flight 0$/m);
  });

  it('waits for swf-monitor at start-up: keeps asking for an agent id until it answers', async () => {
    bed.double.fail({ path: '/state/next-agent-id/', status: 503, times: 6 });
    const a = await bed.agent({ FASTMON_MONITOR_RETRIES: '1' });
    expect(a.agent.agentName).toMatch(/^fastmon-agent-.+-1$/);
    expect(
      a.logs.records().filter((r) => String(r.msg).startsWith('cannot get an agent id from swf-monitor')),
    ).toHaveLength(3);
    expect(bed.double.requests.filter((r) => r.path.includes('next-agent-id')).map((r) => r.status)).toEqual([
      503, 503, 503, 503, 503, 503, 200,
    ]);
  });

  it('finishes in-flight STFs before it stops, and reports EXITED after them', async () => {
    const a = await bed.agent();
    bed.double.delay(300); // every monitor answer takes 300 ms
    await bed.peer.publish(bed.topic, stfReady(1));
    await waitUntil(() => a.agent.busy > 0, 'the STF to be in flight');
    await a.stop();
    bed.running = [];
    bed.double.clearFaults();
    expect(bed.double.fastmonFiles).toHaveLength(7);
    await bed.seen.waitFor(
      (c) => registered(c).length === 7,
      5000,
      'all 7 notifications, sent before the stop completed',
    );
    const beats = bed.double.heartbeats.map((h) => h.body.operational_state);
    expect(beats.at(-1)).toBe('EXITED');
    expect(a.logs.find((r) => r.msg === 'stopping: no new messages, draining in-flight work')?.inFlight).toBe(
      1,
    );
  });
});

async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
