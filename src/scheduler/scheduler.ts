// The STF pipeline on the main thread: gate, read and sample in a worker, register, broadcast; bounded.

import { setMaxListeners } from 'node:events';
import { baseName, isStfSelected, sampleStf } from '../../workers/sampler.js';
import type { Sample, StfTaskSuccess } from '../../workers/stf-task.js';
import type { SamplingSettings } from '../config/load.js';
import { type ErrorInfo, FastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type StfReady, tfFileRegistered } from '../messaging/codec.js';
import type { Metrics } from '../ops/metrics.js';
import type { RunCounts } from '../run/counts.js';
import type { RunStates } from '../run/run-states.js';
import { type Outcome, Tally } from '../run/tally.js';
import type { Broadcaster } from '../sinks/broadcast.js';
import type { Registrar, SampleRecord } from '../sinks/registrar.js';
import type { FoundFile, StfExecutor } from './pool.js';
import { RecentKeys } from './recent-keys.js';

export type { Outcome } from '../run/tally.js';

export interface StfResult {
  outcome: Outcome;
  stfFilename: string | null;
  runId: string | null;
  /** TF samples recorded (created or found already registered). */
  registered: number;
  /** TF samples whose registration failed. */
  failed: number;
  /** Registered TF samples whose notification could not be published. */
  unbroadcast?: number;
  /** TF samples swf-monitor could not take now, safely in the outbox (registered and notified later). */
  deferred?: number;
  /** Error codes of the samples that failed, for deciding whether a retry can help. */
  failureCodes?: string[];
  reason?: string;
  error?: ErrorInfo;
  /** A new STF of a run whose final fastmon_status was already sent. */
  late?: boolean;
  /** What this handling added to the counts (revert() takes it back when a retry supersedes it). */
  tally?: Tally;
}

export interface SubmitOptions {
  /** Register the Run and StfFile first: the STF was found on disk, not announced by a data agent. */
  registerStf?: boolean;
  /**
   * The caller may retry this delivery: it takes a superseded attempt's counts back with revert()
   * and counts the delivery's outcome metric with settled(), so that retries inside the agent count
   * as attempts, not as STFs received.
   */
  retryable?: boolean;
  /** The file as the caller's stat found it (scan): lets the executor read a small local one inline. */
  found?: FoundFile;
}

type SampleOutcome =
  | { kind: 'ok' | 'deferred'; code?: undefined }
  | { kind: 'unregistered' | 'unbroadcast'; code: string };

/** A TF sample put aside for the outbox drainer: what it needs to register and announce it. */
export interface DeferredSample {
  record: SampleRecord;
  runId: string | null;
  executionId: string | null;
}

export interface SchedulerDeps {
  executor: StfExecutor;
  registrar: Registrar;
  broadcaster: Broadcaster;
  runs: RunStates;
  sampling: SamplingSettings;
  dataRoots: string[];
  outputDir: string | null;
  stfChecksum: boolean;
  maxInFlight: number;
  processedBy: () => string;
  /** Puts a sample in the durable outbox when swf-monitor is unavailable; absent: no outbox. */
  defer?: (sample: DeferredSample) => Promise<void>;
  logger: Logger;
  metrics: Metrics;
}

/**
 * What is recorded for one TF sample: the FastMonFile row's fields, and its metadata (the STF as the
 * agent saw it). The notification is built from the same record.
 */
export function sampleRecord(
  stf: Pick<StfReady, 'filename' | 'runId' | 'executionId'>,
  result: Pick<StfTaskSuccess, 'tfCount' | 'tfCountSource' | 'sizeBytes' | 'stfChecksum' | 'header'>,
  sample: Sample,
  processedBy: string,
): SampleRecord {
  return {
    stfFilename: baseName(stf.filename as string),
    tfFilename: sample.tfFilename,
    tfFirst: sample.tfFirst,
    tfLast: sample.tfLast,
    tfCount: sample.tfCount,
    fileSizeBytes: sample.fileSizeBytes,
    checksum: sample.checksum,
    metadata: {
      run_id: stf.runId,
      execution_id: stf.executionId,
      stf_tf_count: result.tfCount,
      tf_count_source: result.tfCountSource,
      stf_size_bytes: result.sizeBytes,
      stf_checksum: result.stfChecksum,
      stf_format: result.header?.format ?? null,
      sample_index: sample.index,
      sample_file: sample.file,
      processed_by: processedBy,
    },
  };
}

/** STFs remembered as fully done, so a redelivered stf_ready costs nothing (not even a GET): 2.6 MB. */
const DONE_MEMORY = 100_000;

/**
 * The key an STF is found by while in flight and remembered by once done. Only its fingerprints are
 * kept (src/scheduler/recent-keys.ts), so the string is garbage once the STF is handled.
 */
function stfKey(runId: string | null | undefined, filename: string): string {
  return `${runId ?? ''}/${baseName(filename)}`;
}

/**
 * Each accepted STF goes through the same steps whatever its source (broker, replay, scan).
 * At most `maxInFlight` run at once; the rest wait in arrival order. Registration of all
 * samples of all in-flight STFs goes out concurrently over the monitor's keep-alive pool, and an
 * STF's registered samples are broadcast together once all have their answer: nothing here blocks
 * message reception.
 */
export class Scheduler {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly inFlightByKey = new Map<string, Promise<StfResult>>();
  private readonly done = new RecentKeys(DONE_MEMORY);
  private readonly byRun = new Map<string, Set<Promise<StfResult>>>();
  private readonly all = new Set<Promise<StfResult>>();
  private readonly abort = new AbortController();

  constructor(private readonly deps: SchedulerDeps) {
    // Every in-flight request listens on this one signal; thousands at once are expected.
    setMaxListeners(0, this.abort.signal);
  }

  /** Counts over all runs, including STFs whose message names no run (kept by RunStates). */
  get totals(): Readonly<RunCounts> {
    return this.deps.runs.totals;
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Accepts an stf_ready; resolves when it is fully handled. Never rejects. */
  submit(stf: StfReady, messageId = '', options: SubmitOptions = {}): Promise<StfResult> {
    const tally = new Tally();
    const handled = this.handle(stf, messageId, options, tally).catch((err): StfResult => {
      // A bug, not an STF problem: keep the agent alive and say so loudly.
      this.deps.logger.error(
        { err, stf: stf.filename, run: stf.runId, msgId: messageId },
        'unexpected error in the STF pipeline',
      );
      return {
        outcome: 'failed',
        stfFilename: stf.filename,
        runId: stf.runId,
        registered: 0,
        failed: 0,
        reason: messageOf(err),
      };
    });
    // Counted before the promise settles: whoever waits for the run (settleRun) sees the counts.
    const promise = handled.then((result) => {
      result.tally = tally;
      this.deps.runs.record(result.runId, tally);
      if (!options.retryable) this.settled(result);
      return result;
    });
    this.track(promise, stf.runId);
    return promise;
  }

  /** Takes back the counts of an attempt a retry supersedes (the retry counts instead). */
  revert(result: StfResult): void {
    if (result.tally) this.deps.runs.takeBack(result.runId, result.tally);
  }

  /** The delivery is settled with this attempt: its outcome goes to fastmon_stfs_total. */
  settled(result: StfResult): void {
    const outcome = result.tally?.outcome;
    if (outcome && !result.tally?.reverted) this.deps.metrics.stfs.inc({ outcome });
  }

  /** Resolves when every STF of the run accepted so far is handled (for end_run). */
  async settleRun(runId: string): Promise<void> {
    const set = this.byRun.get(runId);
    if (set) await Promise.all(set);
  }

  /** Waits for all accepted work, at most timeoutMs; returns true when everything finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      if (Number.isFinite(timeoutMs)) timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = (async () => {
      while (this.all.size > 0) await Promise.all(this.all);
      return true as const;
    })();
    const result = await Promise.race([finished, timeout]);
    clearTimeout(timer);
    if (!result) this.abort.abort(new FastmonError('SHUTDOWN', 'shutdown: drain timeout reached'));
    return result;
  }

  private track(promise: Promise<StfResult>, runId: string | null): void {
    this.all.add(promise);
    let set: Set<Promise<StfResult>> | undefined;
    if (runId) {
      set = this.byRun.get(runId) ?? new Set();
      this.byRun.set(runId, set);
      set.add(promise);
    }
    void promise.finally(() => {
      this.all.delete(promise);
      if (set && runId) {
        set.delete(promise);
        if (set.size === 0) this.byRun.delete(runId);
      }
    });
  }

  private async handle(
    stf: StfReady,
    messageId: string,
    options: SubmitOptions,
    tally: Tally,
  ): Promise<StfResult> {
    const { runs, metrics, logger } = this.deps;
    const run = stf.runId ? runs.getOrCreate(stf.runId, stf.executionId, stf.namespace) : null;
    // Attempts count at once and are never taken back; the rest is in the tally.
    runs.countAttempt(run ? run.runId : null);
    metrics.stfAttempts.inc();
    tally.add('stfsReceived');
    const base = { stfFilename: stf.filename, runId: stf.runId, registered: 0, failed: 0 };
    const log = logger.child({ run: stf.runId, stf: stf.filename, msgId: messageId });

    if (!stf.filename) {
      // The Rucio data agents announce a whole run with one stf_ready and no filename (docs/testbed-interface.md, "stf_ready").
      tally.add('stfsWithoutFile');
      tally.outcome = 'no_file';
      log.info('stf_ready without filename (per-run announcement): nothing to sample');
      return { ...base, outcome: 'no_file', reason: 'no filename' };
    }
    const late = run !== null && runs.noteStf(run, baseName(stf.filename)) && run.finalSent;
    if (late && run) {
      runs.countLate(run.runId);
      metrics.stfsLate.inc();
      log.warn(
        { code: 'STF_AFTER_RUN_END', expected: run.expectedStfs, seen: run.stfsSeen },
        `STF of run ${run.runId} arrived after its final fastmon_status; counted, and a follow-up status is sent`,
      );
    }
    const result = await this.handleNamed(stf as StfReady & { filename: string }, options, tally, log);
    if (late) result.late = true;
    return result;
  }

  private async handleNamed(
    stf: StfReady & { filename: string },
    options: SubmitOptions,
    tally: Tally,
    log: Logger,
  ): Promise<StfResult> {
    const { runs, sampling } = this.deps;
    const base = { stfFilename: stf.filename, runId: stf.runId, registered: 0, failed: 0 };
    const key = stfKey(stf.runId, stf.filename);
    // A redelivery that arrives while the first delivery is still being handled waits for it, then
    // counts as a duplicate only if that one completed: an STF whose broadcasts failed (the broker
    // went away mid-way) must be handled again, or its samples would never be announced.
    const previous = this.inFlightByKey.get(key);
    if (previous) await previous;
    if (this.done.has(key)) {
      tally.add('stfsDuplicate');
      tally.outcome = 'duplicate';
      log.info('stf_ready for an STF already handled: nothing new to register');
      return { ...base, outcome: 'duplicate', reason: 'already handled' };
    }
    const gate = runs.gate(stf, sampling.sampleOnlyInPhysics);
    const selected =
      gate.sample && isStfSelected(sampling.seed, stf.runId, stf.filename, sampling.stfSelectionFraction);
    if (!selected) {
      const reason = gate.sample
        ? `not selected (stf_selection_fraction ${sampling.stfSelectionFraction})`
        : gate.reason;
      tally.add('stfsSkipped');
      tally.outcome = 'skipped';
      log.info({ reason }, 'STF skipped');
      return { ...base, outcome: 'skipped', reason };
    }

    const work = this.withSlot(() => this.process(stf, log, options, tally));
    this.inFlightByKey.set(key, work);
    try {
      const result = await work;
      // Only a complete STF is remembered: a redelivery must retry what failed.
      if (result.outcome === 'sampled' && result.failed === 0 && result.unbroadcast === 0) this.done.add(key);
      return result;
    } finally {
      this.inFlightByKey.delete(key);
    }
  }

  private async process(
    stf: StfReady,
    log: Logger,
    options: SubmitOptions,
    tally: Tally,
  ): Promise<StfResult> {
    const { executor, sampling, metrics } = this.deps;
    const filename = stf.filename as string;
    const base = { stfFilename: filename, runId: stf.runId };
    const result = await executor.run(
      {
        seed: sampling.seed,
        runId: stf.runId,
        stfFilename: filename,
        fileUrl: stf.fileUrl,
        filename,
        messageSizeBytes: stf.sizeBytes,
        messageTfCount: stf.tfCount,
        messageChecksum: stf.checksum,
        dataRoots: this.deps.dataRoots,
        outputDir: this.deps.outputDir,
        stfChecksum: this.deps.stfChecksum,
        tfCountDefault: sampling.tfCountDefault,
        settings: sampling,
      },
      options.found,
    );
    if (!result.ok) return this.failed(tally, base, result.error, log);
    if (result.tfCountSource === 'default' && this.deps.registrar.stfTfCount) {
      const failure = await this.tfCountFromStfFile(stf, result, log);
      if (failure) return this.failed(tally, base, failure, log);
    }
    if (options.registerStf) {
      const failure = await this.registerStf(stf, result);
      if (failure) return this.failed(tally, base, failure, log);
    }
    if (result.warning) {
      metrics.stfErrors.inc({ code: result.warning.code });
      log.warn({ code: result.warning.code }, result.warning.message);
    }
    // Every sample is registered first, then the registered ones are announced together: their
    // SEND frames leave in one socket write (src/messaging/coalesce.ts) instead of one write, and
    // one broker wake-up, per answer as the monitor's answers trickle in. The STF's last
    // notification leaves no later than it would one by one.
    const registrations = await Promise.all(
      result.samples.map((s) => this.register(stf, tally, result, s, log)),
    );
    const outcomes = await Promise.all(
      registrations.map((r) => (r.kind === 'registered' ? this.announce(r.body, r.tfFilename, log) : r)),
    );
    const deferred = outcomes.filter((o) => o.kind === 'deferred').length;
    const failed = outcomes.filter((o) => o.kind === 'unregistered').length;
    const registered = outcomes.length - failed - deferred;
    const unbroadcast = outcomes.filter((o) => o.kind === 'unbroadcast').length;
    const failureCodes = [...new Set(outcomes.flatMap((o) => (o.code ? [o.code] : [])))];
    tally.add('stfsSampled');
    tally.add('tfsRegistered', registered);
    const existing = registrations.filter((r) => r.kind === 'registered' && !r.created).length;
    tally.add('tfsExisting', existing);
    tally.add('tfsFailed', failed);
    tally.add(
      'bytesSampled',
      result.samples.reduce((sum, s) => sum + (s.fileSizeBytes ?? 0), 0),
    );
    tally.outcome = 'sampled';
    log.info(
      {
        samples: result.samples.length,
        registered,
        existing,
        failed,
        deferred,
        unbroadcast,
        tfCount: result.tfCount,
        tfCountSource: result.tfCountSource,
        sizeBytes: result.sizeBytes,
        read: result.path !== null,
      },
      failed === 0 && unbroadcast === 0
        ? 'STF sampled'
        : 'STF sampled with failed TF registrations or broadcasts',
    );
    return {
      stfFilename: filename,
      runId: stf.runId,
      outcome: 'sampled',
      registered,
      failed,
      unbroadcast,
      deferred,
      failureCodes,
    };
  }

  private failed(
    tally: Tally,
    base: Pick<StfResult, 'stfFilename' | 'runId'>,
    error: ErrorInfo,
    log: Logger,
  ): StfResult {
    tally.add('stfsFailed');
    tally.error(error.code);
    tally.outcome = 'failed';
    this.deps.metrics.stfErrors.inc({ code: error.code });
    log.error({ code: error.code, details: error.details }, `STF not sampled: ${error.message}`);
    return { ...base, outcome: 'failed', registered: 0, failed: 0, error, reason: error.message };
  }

  /**
   * Neither the STF header nor the message gave tf_count (true of every testbed producer): the
   * StfFile row may (`GET /api/stf-files/?stf_filename=`, an exact filter). Sampling 1000 TFs of an
   * STF that has 100 would point most samples past its end. The ranges are drawn again, on this
   * thread: the sampler is a pure function and nothing was extracted (no TF index means no header
   * count). swf-monitor unreachable fails the STF as transient, so the message is handled again.
   */
  private async tfCountFromStfFile(
    stf: StfReady,
    result: StfTaskSuccess,
    log: Logger,
  ): Promise<ErrorInfo | null> {
    const { registrar, metrics, sampling } = this.deps;
    let tfCount: number | null;
    try {
      tfCount = await (registrar.stfTfCount as NonNullable<Registrar['stfTfCount']>)(
        baseName(stf.filename as string),
        this.abort.signal,
      );
    } catch (err) {
      metrics.tfCountLookups.inc({ result: 'failed' });
      if (err instanceof FastmonError && err.code !== 'MONITOR_UNAVAILABLE') {
        log.warn({ code: err.code }, `StfFile lookup for tf_count failed; using the default: ${err.message}`);
        return null;
      }
      return err instanceof FastmonError
        ? err.toInfo()
        : { code: 'MONITOR_UNAVAILABLE', message: messageOf(err) };
    }
    metrics.tfCountLookups.inc({ result: tfCount === null ? 'absent' : 'found' });
    if (tfCount === null) return null;
    result.tfCount = tfCount;
    result.tfCountSource = 'stf_file';
    result.samples = sampleStf({
      seed: sampling.seed,
      runId: stf.runId,
      stfFilename: stf.filename as string,
      tfCount,
      stfSizeBytes: result.sizeBytes,
      settings: sampling,
    }).map((r) => ({ ...r, checksum: null, file: null }));
    return null;
  }

  /**
   * An STF found on disk is unknown to swf-monitor, which refuses samples of an unknown STF: the
   * Run and the StfFile go in first. The run number comes from the name (`swf.<run>.<seq>.stf`)
   * or the STF header, never from a default (the original agent put every STF under run 1).
   */
  private async registerStf(stf: StfReady, result: StfTaskSuccess): Promise<ErrorInfo | null> {
    const runId = stf.runId ?? result.header?.runId ?? null;
    if (!runId || !/^\d+$/.test(runId)) {
      return {
        code: 'RUN_UNKNOWN',
        message: `${stf.filename}: no run number in its name or header; not registered`,
      };
    }
    try {
      await this.deps.registrar.ensureStf(
        {
          stfFilename: baseName(stf.filename as string),
          runNumber: Number(runId),
          sizeBytes: result.sizeBytes,
          checksum: result.stfChecksum,
          tfCount: result.tfCountSource === 'default' ? null : result.tfCount,
          state: stf.state ?? result.header?.state ?? null,
          substate: stf.substate ?? result.header?.substate ?? null,
          metadata: { created_by: this.deps.processedBy(), source: 'disk', path: result.path },
        },
        this.abort.signal,
      );
      stf.runId = runId; // the samples' notifications carry the run found here
      return null;
    } catch (err) {
      if (err instanceof FastmonError) return err.toInfo();
      return { code: 'MONITOR_UNAVAILABLE', message: messageOf(err) };
    }
  }

  /** Registers one sample; a sample the monitor could not take goes to the outbox if there is one. */
  private async register(
    stf: StfReady,
    tally: Tally,
    result: StfTaskSuccess,
    sample: Sample,
    log: Logger,
  ): Promise<
    | SampleOutcome
    | { kind: 'registered'; body: Record<string, unknown>; tfFilename: string; created: boolean }
  > {
    const { registrar, metrics } = this.deps;
    const record = sampleRecord(stf, result, sample, this.deps.processedBy());
    let tfFileId: string;
    let created: boolean;
    try {
      const registered = await registrar.register(record, this.abort.signal);
      tfFileId = registered.tfFileId;
      created = registered.created;
      metrics.tfsRegistered.inc({ created: String(registered.created) });
      if (sample.fileSizeBytes !== null) tally.sample(sample.fileSizeBytes);
    } catch (err) {
      const code = err instanceof FastmonError ? err.code : 'MONITOR_UNAVAILABLE';
      if (code === 'MONITOR_UNAVAILABLE' && this.deps.defer) {
        try {
          await this.deps.defer({ record, runId: stf.runId, executionId: stf.executionId });
          metrics.tfsDeferred.inc();
          log.warn(
            { code, tf_filename: sample.tfFilename },
            `TF sample put in the outbox: ${messageOf(err)}`,
          );
          return { kind: 'deferred' };
        } catch (outboxErr) {
          const outboxCode = (outboxErr as FastmonError).code ?? 'OUTBOX_WRITE_FAILED';
          log.error({ code: outboxCode, tf_filename: sample.tfFilename }, messageOf(outboxErr));
          metrics.tfsFailed.inc({ code: outboxCode });
          return { kind: 'unregistered', code: outboxCode };
        }
      }
      metrics.tfsFailed.inc({ code });
      tally.error(code);
      log.error(
        { code, tf_filename: sample.tfFilename, details: (err as FastmonError).details },
        `TF sample not registered: ${messageOf(err)}`,
      );
      return { kind: 'unregistered', code };
    }
    // Field by field, not `{ ...record, … }`: V8 11 builds a spread followed by more keys on a slow
    // path (7.6 µs against well under 1 µs, seven times per STF; BENCHMARKS.md, "The agent's own cost").
    const body = tfFileRegistered({
      processedBy: this.deps.processedBy(),
      runId: stf.runId,
      executionId: stf.executionId,
      stfFilename: record.stfFilename,
      tfFileId,
      tfFilename: record.tfFilename,
      tfFirst: record.tfFirst,
      tfLast: record.tfLast,
      tfCount: record.tfCount,
      fileSizeBytes: record.fileSizeBytes,
      checksum: record.checksum,
      status: 'registered',
    });
    return { kind: 'registered', body, tfFilename: sample.tfFilename, created };
  }

  /** Broadcasts a registered sample's tf_file_registered. */
  private async announce(
    body: Record<string, unknown>,
    tfFilename: string,
    log: Logger,
  ): Promise<SampleOutcome> {
    const { broadcaster, metrics } = this.deps;
    try {
      await broadcaster.publish(body);
      metrics.broadcasts.inc({ msg_type: 'tf_file_registered', result: 'ok' });
      return { kind: 'ok' };
    } catch (err) {
      metrics.broadcasts.inc({ msg_type: 'tf_file_registered', result: 'failed' });
      log.error(
        { code: 'PUBLISH_FAILED', tf_filename: tfFilename },
        `tf_file_registered not broadcast: ${messageOf(err)}`,
      );
      return { kind: 'unbroadcast', code: 'PUBLISH_FAILED' };
    }
  }

  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.deps.maxInFlight) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    this.updateGauges();
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next)
        next(); // hand the slot over directly
      else this.active--;
      this.updateGauges();
    }
  }

  private updateGauges(): void {
    this.deps.metrics.inFlight.set(this.active);
    this.deps.metrics.queued.set(this.waiting.length);
  }
}
