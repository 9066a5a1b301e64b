// The STF pipeline and the run's end without a broker: the inline executor, and sinks that keep what they get.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunEnds } from '../src/agent/run-end.js';
import { RunSummaries } from '../src/agent/run-summaries.js';
import { loadConfig, type SamplingSettings } from '../src/config/load.js';
import { FastmonError } from '../src/errors.js';
import type { LifecycleType, RunLifecycle, StfReady } from '../src/messaging/codec.js';
import { createMetrics, type Metrics } from '../src/ops/metrics.js';
import { type RunInfo, RunStates } from '../src/run/run-states.js';
import { createInlineExecutor } from '../src/scheduler/pool.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import type { Broadcaster } from '../src/sinks/broadcast.js';
import type { Registered, Registrar, SampleRecord, StfRecord } from '../src/sinks/registrar.js';
import { type CapturedLogs, captureLogs } from './support/logs.js';

const AGENT = 'fastmon-agent-test-1';
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** swf-monitor's FastMonFile table as far as the scheduler can tell: unique by tf_filename. */
class MemoryRegistrar implements Registrar {
  readonly kind = 'monitor';
  readonly rows = new Map<string, SampleRecord>();
  readonly stfs: StfRecord[] = [];
  /** Registration attempts, refused ones included, in order. */
  readonly attempts: SampleRecord[] = [];
  /** Decides, per sample, whether this attempt is refused and with what. */
  refuse: (record: SampleRecord) => FastmonError | null = () => null;

  async register(record: SampleRecord): Promise<Registered> {
    this.attempts.push(record);
    const refusal = this.refuse(record);
    if (refusal) throw refusal;
    const created = !this.rows.has(record.tfFilename);
    if (created) this.rows.set(record.tfFilename, record);
    return { tfFileId: `id-${record.tfFilename}`, created };
  }

  async ensureStf(stf: StfRecord): Promise<void> {
    this.stfs.push(stf);
  }

  async close(): Promise<void> {}
}

/** Every notification published, in order; a message type listed in `failing` is refused. */
class MemoryBroadcaster implements Broadcaster {
  readonly kind = 'stdout';
  readonly published: Record<string, unknown>[] = [];
  readonly failing = new Set<string>();

  async publish(body: Record<string, unknown>): Promise<void> {
    if (this.failing.has(String(body.msg_type))) throw new Error('broker gone');
    this.published.push(body);
  }

  ofType(msgType: string): Record<string, unknown>[] {
    return this.published.filter((m) => m.msg_type === msgType);
  }
}

interface Pipeline {
  runs: RunStates;
  scheduler: Scheduler;
  registrar: MemoryRegistrar;
  broadcaster: MemoryBroadcaster;
  summaries: RunSummaries;
  runEnds: RunEnds;
  metrics: Metrics;
  logs: CapturedLogs;
  /** A lifecycle message, applied to the run states as the agent applies it; returns the run. */
  lifecycle(msgType: LifecycleType, runId: string, totalStfFiles?: number): RunInfo;
}

function pipeline(
  options: { sampling?: Partial<SamplingSettings>; dataRoots?: string[]; graceS?: number } = {},
): Pipeline {
  const logs = captureLogs();
  const metrics = createMetrics();
  const runs = new RunStates();
  const registrar = new MemoryRegistrar();
  const broadcaster = new MemoryBroadcaster();
  const sampling = { ...loadConfig({ env: {} }).config.sampling, tfFilesPerStf: 3, ...options.sampling };
  const scheduler = new Scheduler({
    executor: createInlineExecutor(),
    registrar,
    broadcaster,
    runs,
    sampling,
    dataRoots: options.dataRoots ?? [],
    outputDir: null,
    stfChecksum: false,
    maxInFlight: 4,
    processedBy: () => AGENT,
    logger: logs.logger,
    metrics,
  });
  const summaries = new RunSummaries({
    runs,
    broadcaster,
    processedBy: () => AGENT,
    outboxDepth: () => null,
    intervalS: 10,
    idleTimeoutS: 3600,
    logger: logs.logger,
    metrics,
  });
  const runEnds = new RunEnds({
    runs,
    settleRun: (runId) => scheduler.settleRun(runId),
    broadcaster,
    summaries: () => summaries,
    processedBy: () => AGENT,
    graceS: options.graceS ?? 3600,
    logger: logs.logger,
    metrics,
  });
  return {
    runs,
    scheduler,
    registrar,
    broadcaster,
    summaries,
    runEnds,
    metrics,
    logs,
    lifecycle(msgType, runId, totalStfFiles) {
      const run = runs.apply(lifecycleMessage(msgType, runId, totalStfFiles ?? null));
      if (!run) throw new Error(`run ${runId} not tracked`);
      return run;
    },
  };
}

function lifecycleMessage(msgType: LifecycleType, runId: string, totalStfFiles: number | null): RunLifecycle {
  return {
    msgType,
    runId,
    executionId: 'exec-1',
    namespace: null,
    state: null,
    substate: null,
    totalStfFiles,
  };
}

/** The testbed's stf_ready: a name, a size, a TF count, nothing on local disk. */
function stfReady(runId: string, seq: number, fields: Partial<StfReady> = {}): StfReady {
  return {
    msgType: 'stf_ready',
    runId,
    executionId: 'exec-1',
    namespace: null,
    state: null,
    substate: null,
    filename: `swf.${runId}.${String(seq).padStart(6, '0')}.stf`,
    fileUrl: null,
    sizeBytes: 2_000_000,
    checksum: null,
    sequence: seq,
    tfCount: 100,
    ...fields,
  };
}

async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  const values = (await metric?.get())?.values ?? [];
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** A data root holding one file under the given STF name. */
function dataRootWith(name: string, bytes: Buffer): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-scheduler-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, name), bytes);
  return dir;
}

describe('scheduler without a broker', () => {
  it('an stf_ready in run/physics registers each sample once and announces each with tf_file_registered', async () => {
    const p = pipeline();
    p.lifecycle('run_imminent', '100');
    p.lifecycle('start_run', '100');
    const result = await p.scheduler.submit(stfReady('100', 1), 'msg-1');

    expect(result).toMatchObject({ outcome: 'sampled', registered: 3, failed: 0, unbroadcast: 0 });
    const rows = [...p.registrar.rows.values()];
    expect(rows).toHaveLength(3);
    const notices = p.broadcaster.ofType('tf_file_registered');
    expect(notices.map((n) => n.tf_filename)).toEqual(rows.map((r) => r.tfFilename));
    for (const [i, notice] of notices.entries()) {
      const row = rows[i] as SampleRecord;
      expect(notice).toMatchObject({
        processed_by: AGENT,
        run_id: '100',
        execution_id: 'exec-1',
        stf_filename: 'swf.100.000001.stf',
        tf_file_id: `id-${row.tfFilename}`,
        tf_first: row.tfFirst,
        tf_last: row.tfLast,
        tf_count: row.tfCount,
        file_size_bytes: row.fileSizeBytes,
        status: 'registered',
      });
      expect(row.metadata).toMatchObject({ run_id: '100', stf_tf_count: 100, tf_count_source: 'message' });
    }
    expect(p.runs.get('100')?.counts).toMatchObject({
      stfsReceived: 1,
      stfsSampled: 1,
      tfsRegistered: 3,
      stfAttempts: 1,
    });
    expect(await metricValue(p.metrics, 'fastmon_stfs_total', { outcome: 'sampled' })).toBe(1);
  });

  it('samples only in run/physics: STFs during run_imminent and pause_run are skipped with the state as reason', async () => {
    const p = pipeline();
    p.lifecycle('run_imminent', '101');
    const early = await p.scheduler.submit(stfReady('101', 1));
    p.lifecycle('start_run', '101');
    const running = await p.scheduler.submit(stfReady('101', 2));
    p.lifecycle('pause_run', '101');
    const paused = await p.scheduler.submit(stfReady('101', 3));
    p.lifecycle('resume_run', '101');
    const resumed = await p.scheduler.submit(stfReady('101', 4));

    expect([early, running, paused, resumed].map((r) => r.outcome)).toEqual([
      'skipped',
      'sampled',
      'skipped',
      'sampled',
    ]);
    expect(early.reason).toBe('run 101 is beam/not_ready');
    expect(paused.reason).toBe('run 101 is run/standby');
    expect(new Set([...p.registrar.rows.values()].map((r) => r.stfFilename))).toEqual(
      new Set(['swf.101.000002.stf', 'swf.101.000004.stf']),
    );
    expect(p.runs.get('101')?.counts).toMatchObject({ stfsReceived: 4, stfsSampled: 2, stfsSkipped: 2 });
    expect(p.logs.records().filter((r) => r.msg === 'STF skipped')).toHaveLength(2);
  });

  it('a redelivered stf_ready registers nothing new and counts as a duplicate', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '102');
    await p.scheduler.submit(stfReady('102', 1));
    const again = await p.scheduler.submit(stfReady('102', 1));

    expect(again.outcome).toBe('duplicate');
    expect(p.registrar.attempts).toHaveLength(3);
    expect(p.broadcaster.ofType('tf_file_registered')).toHaveLength(3);
    expect(p.runs.get('102')?.counts).toMatchObject({ stfsReceived: 2, stfsSampled: 1, stfsDuplicate: 1 });
    expect(p.scheduler.totals).toMatchObject({ stfsReceived: 2, stfsSampled: 1, stfsDuplicate: 1 });
  });

  it('an stf_ready without a filename is a per-run announcement: counted, nothing sampled', async () => {
    const p = pipeline();
    const result = await p.scheduler.submit(stfReady('103', 1, { filename: null }));

    expect(result.outcome).toBe('no_file');
    expect(p.registrar.attempts).toEqual([]);
    expect(p.broadcaster.published).toEqual([]);
    expect(p.runs.get('103')?.counts).toMatchObject({ stfsReceived: 1, stfsWithoutFile: 1 });
  });

  it('an STF that cannot be read fails with its code, tallied in the run errors and in the metrics', async () => {
    const name = 'swf.104.000001.stf';
    const root = dataRootWith(name, Buffer.from('this is no STF at all\n\u0001\u0002'));
    const p = pipeline({ dataRoots: [root] });
    p.lifecycle('start_run', '104');
    const result = await p.scheduler.submit(stfReady('104', 1), 'msg-7');

    expect(result.outcome).toBe('failed');
    expect(result.error?.code).toBe('STF_BAD_MAGIC');
    expect(p.registrar.attempts).toEqual([]);
    const run = p.runs.get('104');
    expect(run?.counts).toMatchObject({ stfsReceived: 1, stfsFailed: 1, stfsSampled: 0 });
    expect(run?.errors).toEqual({ STF_BAD_MAGIC: 1 });
    expect(await metricValue(p.metrics, 'fastmon_stf_errors_total', { code: 'STF_BAD_MAGIC' })).toBe(1);
    expect(p.logs.find((r) => r.code === 'STF_BAD_MAGIC')).toMatchObject({
      level: 'error',
      run: '104',
      stf: name,
      msgId: 'msg-7',
    });
  });

  it('samples swf-monitor refuses are counted failed, with their code in the run errors, and are not announced', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '105');
    let refused = 0;
    p.registrar.refuse = () =>
      refused++ === 0 ? new FastmonError('MONITOR_REJECTED', 'swf-monitor answered 400') : null;
    const result = await p.scheduler.submit(stfReady('105', 1));

    expect(result).toMatchObject({ outcome: 'sampled', registered: 2, failed: 1 });
    expect(result.failureCodes).toEqual(['MONITOR_REJECTED']);
    expect(p.broadcaster.ofType('tf_file_registered')).toHaveLength(2);
    expect(p.runs.get('105')?.counts).toMatchObject({ stfsSampled: 1, tfsRegistered: 2, tfsFailed: 1 });
    expect(p.runs.get('105')?.errors).toEqual({ MONITOR_REJECTED: 1 });
    expect(await metricValue(p.metrics, 'fastmon_tfs_failed_total', { code: 'MONITOR_REJECTED' })).toBe(1);
  });

  it('registered samples whose notification fails are counted unbroadcast, so the STF is handled again', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '106');
    p.broadcaster.failing.add('tf_file_registered');
    const first = await p.scheduler.submit(stfReady('106', 1));
    expect(first).toMatchObject({ outcome: 'sampled', registered: 3, unbroadcast: 3 });
    expect(first.failureCodes).toEqual(['PUBLISH_FAILED']);

    p.broadcaster.failing.clear();
    const again = await p.scheduler.submit(stfReady('106', 1));
    expect(again).toMatchObject({ outcome: 'sampled', registered: 3, unbroadcast: 0 });
    expect(p.broadcaster.ofType('tf_file_registered')).toHaveLength(3);
    expect(p.runs.get('106')?.counts).toMatchObject({ tfsRegistered: 6, tfsExisting: 3 });
  });

  it('a delivery retried inside the agent counts once: the superseded attempt is taken back', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '107');
    p.registrar.refuse = () => new FastmonError('MONITOR_UNAVAILABLE', 'swf-monitor answered 503');
    const first = await p.scheduler.submit(stfReady('107', 1), 'msg-9', { retryable: true });
    expect(first).toMatchObject({ outcome: 'sampled', registered: 0, failed: 3 });
    expect(p.runs.get('107')?.errors).toEqual({ MONITOR_UNAVAILABLE: 3 });

    p.registrar.refuse = () => null;
    p.scheduler.revert(first);
    p.scheduler.revert(first); // taken back once, however often asked
    const second = await p.scheduler.submit(stfReady('107', 1), 'msg-9', { retryable: true });
    p.scheduler.settled(second);

    const run = p.runs.get('107');
    expect(run?.counts).toMatchObject({
      stfsReceived: 1,
      stfAttempts: 2,
      stfsSampled: 1,
      tfsRegistered: 3,
      tfsFailed: 0,
    });
    expect(run?.errors).toEqual({});
    expect(p.scheduler.totals).toMatchObject({ stfsReceived: 1, stfAttempts: 2, tfsFailed: 0 });
    expect(await metricValue(p.metrics, 'fastmon_stfs_total')).toBe(1);
    expect(await metricValue(p.metrics, 'fastmon_stf_attempts_total')).toBe(2);
  });

  it('STFs of a run no message named yet are sampled (state unknown) and count in the run when it is announced', async () => {
    const p = pipeline();
    const before = await p.scheduler.submit(stfReady('108', 1));
    expect(before.outcome).toBe('sampled');
    expect(p.runs.get('108')?.announced).toBe(false);

    p.lifecycle('run_imminent', '108');
    p.lifecycle('start_run', '108');
    await p.scheduler.submit(stfReady('108', 2));
    expect(p.runs.get('108')).toMatchObject({ announced: true, phase: 'physics' });
    expect(p.runs.get('108')?.counts).toMatchObject({ stfsReceived: 2, stfsSampled: 2, tfsRegistered: 6 });
  });
});

describe('the end of a run without a broker', () => {
  it('fastmon_summary carries the run counts, the sample-size histogram and the error codes', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '200');
    await p.scheduler.submit(stfReady('200', 1, { sizeBytes: 1_000_000 }));
    await p.scheduler.submit(stfReady('200', 2, { sizeBytes: 100_000_000 }));
    await p.scheduler.submit(stfReady('200', 2));
    p.registrar.refuse = () => new FastmonError('REGISTRATION_CONFLICT', 'another range under this name');
    await p.scheduler.submit(stfReady('200', 3));
    const run = p.runs.get('200');
    if (!run) throw new Error('run 200 not tracked');
    await p.summaries.final(run);

    const [summary] = p.broadcaster.ofType('fastmon_summary');
    expect(summary).toMatchObject({
      processed_by: AGENT,
      run_id: '200',
      execution_id: 'exec-1',
      final: true,
      timed_out: false,
      stfs_seen: 4,
      stfs_sampled: 3,
      stfs_duplicate: 1,
      stfs_failed: 0,
      tf_files_registered: 6,
      tf_files_failed: 3,
      stf_attempts: 4,
      errors: { REGISTRATION_CONFLICT: 3 },
    });
    // Bytes are those of every sample of a sampled STF, registered or not; the duplicate adds none.
    const bytes = p.registrar.attempts.reduce((sum, r) => sum + (r.fileSizeBytes ?? 0), 0);
    expect(p.registrar.attempts).toHaveLength(9);
    expect(summary?.bytes_sampled).toBe(bytes);
    const registered = [...p.registrar.rows.values()];
    // One count per registered sample, in the bucket of its size (refused samples are not counted).
    const histogram = summary?.sample_size_histogram as { edges_bytes: number[]; counts: number[] };
    const expected = histogram.edges_bytes.map(() => 0);
    for (const row of registered) {
      const bucket = histogram.edges_bytes.findLastIndex((edge) => (row.fileSizeBytes as number) >= edge);
      expected[bucket] = (expected[bucket] ?? 0) + 1;
    }
    expect(histogram.counts).toEqual(expected);
    expect(histogram.counts.reduce((a, b) => a + b, 0)).toBe(6);
  });

  it('end_run overtaken by its last STFs: the run ends once they are handled, summary before status', async () => {
    const p = pipeline();
    p.lifecycle('run_imminent', '201');
    p.lifecycle('start_run', '201');
    await p.scheduler.submit(stfReady('201', 1));
    const run = p.lifecycle('end_run', '201', 3);
    expect(run.phase).toBe('ended');
    const ended = p.runEnds.close(run); // as the agent does, in the background
    // end_run keeps run/physics: STFs taken before it are still sampled.
    await p.scheduler.submit(stfReady('201', 2));
    expect(p.broadcaster.ofType('fastmon_status')).toEqual([]);
    await p.scheduler.submit(stfReady('201', 3));
    await p.runEnds.close(run); // a redelivered end_run during the grace ends nothing twice
    await ended;

    expect(p.broadcaster.published.map((m) => m.msg_type)).toEqual([
      ...Array(9).fill('tf_file_registered'),
      'fastmon_summary',
      'fastmon_status',
    ]);
    const [status] = p.broadcaster.ofType('fastmon_status');
    expect(status).toMatchObject({
      processed_by: AGENT,
      status: 'completed',
      run_id: '201',
      execution_id: 'exec-1',
      stfs_received: 3,
      stfs_sampled: 3,
      tf_files_registered: 9,
      stfs_expected: 3,
      stfs_seen: 3,
      stfs_missing: 0,
      grace_expired: false,
      update: false,
    });
    expect(String(status?.message)).toContain('run 201 ended: 3 of 3 STFs sampled (end_run announced 3)');
    expect(p.runs.get('201')?.finalSent).toBe(true);
  });

  it('when the grace runs out the status says how many announced STFs are missing, and RUN_INCOMPLETE is logged', async () => {
    const p = pipeline({ graceS: 0 });
    p.lifecycle('start_run', '202');
    await p.scheduler.submit(stfReady('202', 1));
    await p.scheduler.submit(stfReady('202', 2));
    const run = p.lifecycle('end_run', '202', 5);
    await p.runEnds.close(run);

    const [status] = p.broadcaster.ofType('fastmon_status');
    expect(status).toMatchObject({
      stfs_expected: 5,
      stfs_seen: 2,
      stfs_missing: 3,
      grace_expired: true,
      stfs_sampled: 2,
    });
    expect(p.logs.find((r) => r.code === 'RUN_INCOMPLETE')).toMatchObject({ run: '202', missing: 3 });
    expect(await metricValue(p.metrics, 'fastmon_runs_incomplete_total')).toBe(1);
  });

  it('an STF after the final status is counted late, and a follow-up status carries the new counts', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '203');
    await p.scheduler.submit(stfReady('203', 1));
    const run = p.lifecycle('end_run', '203', 1);
    await p.runEnds.close(run);

    const late = await p.scheduler.submit(stfReady('203', 2));
    expect(late).toMatchObject({ outcome: 'sampled', late: true });
    const redelivered = await p.scheduler.submit(stfReady('203', 2));
    expect(redelivered.late).toBeUndefined();
    await p.runEnds.followUp(run);

    const statuses = p.broadcaster.ofType('fastmon_status');
    expect(statuses).toHaveLength(2);
    expect(statuses[1]).toMatchObject({
      run_id: '203',
      update: true,
      stfs_late: 1,
      stfs_received: 3,
      stfs_sampled: 2,
      stfs_duplicate: 1,
      stfs_seen: 2,
    });
    expect(String(statuses[1]?.message)).toContain('update: 1 STFs arrived after the final status');
    expect(p.logs.find((r) => r.code === 'STF_AFTER_RUN_END')).toMatchObject({ run: '203', level: 'warn' });
    expect(p.scheduler.totals.stfsLate).toBe(1);
  });

  it('a run_imminent after the end starts the run afresh: the next summary has only the new counts', async () => {
    const p = pipeline();
    p.lifecycle('start_run', '204');
    p.registrar.refuse = () => new FastmonError('MONITOR_REJECTED', 'unknown STF');
    await p.scheduler.submit(stfReady('204', 1));
    p.registrar.refuse = () => null;
    await p.runEnds.close(p.lifecycle('end_run', '204', 1));

    p.lifecycle('run_imminent', '204');
    const again = p.lifecycle('start_run', '204');
    await p.scheduler.submit(stfReady('204', 7));
    await p.summaries.final(again);

    const summaries = p.broadcaster.ofType('fastmon_summary');
    expect(summaries[0]).toMatchObject({ stfs_seen: 1, tf_files_failed: 3, errors: { MONITOR_REJECTED: 3 } });
    expect(summaries[1]).toMatchObject({
      stfs_seen: 1,
      tf_files_failed: 0,
      tf_files_registered: 3,
      errors: {},
    });
    // The totals over all runs keep both.
    expect(p.scheduler.totals).toMatchObject({ stfsReceived: 2, tfsFailed: 3, tfsRegistered: 3 });
  });
});
