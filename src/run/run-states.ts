// Run lifecycle as seen by fastmon: per-run DAQ state from run_imminent … end_run, the run's bookkeeping, and the sampling gate.

import type { RunLifecycle, StfReady } from '../messaging/codec.js';
import { DEFAULT_MAX_RUNS, DEFAULT_RUN_IDLE_TIMEOUT_S } from '../messaging/limits.js';
import { emptyCounts, type RunCounts, SIZE_EDGES } from './counts.js';
import { NameSet } from './name-set.js';
import type { Tally } from './tally.js';

export type Phase = 'imminent' | 'physics' | 'standby' | 'ended';

export interface RunInfo {
  runId: string;
  executionId: string | null;
  namespace: string | null;
  phase: Phase;
  /** Whether any lifecycle message named this run; a run known only from its STFs (a scan) is not. */
  announced: boolean;
  state: string | null;
  substate: string | null;
  /** The bookkeeping below is RunStates' alone: changed through its methods (countAttempt, record, ...). */
  readonly counts: Readonly<RunCounts>;
  /** Sample sizes: counts per bucket of SIZE_EDGES (for fastmon_summary). */
  readonly sizeHistogram: readonly number[];
  /** Error codes seen in this run, with their counts. */
  readonly errors: Readonly<Record<string, number>>;
  firstSeen: Date;
  endedAt: Date | null;
  /** `total_stf_files` of end_run: how many STFs the run announced (null: not said). */
  expectedStfs: number | null;
  /** Distinct STFs of the run seen so far (stf_ready with a filename), retries and redeliveries once. */
  stfsSeen: number;
  /** The final fastmon_status is out: an STF seen after it is late. */
  finalSent: boolean;
  /** Last message about the run (epoch ms): a run silent for the idle timeout is closed. */
  lastSeen: number;
  /** Closed because nothing came for the idle timeout, not by end_run. */
  timedOut: boolean;
}

/** A run as RunStates holds it: the only place its bookkeeping is writable. */
interface Run extends RunInfo {
  counts: RunCounts;
  sizeHistogram: number[];
  errors: Record<string, number>;
}

export interface RunBounds {
  /** Runs tracked at once (ended ones included; the oldest ended run makes room first). */
  maxRuns: number;
  /** A run with no message for this long is closed as timed out. */
  idleTimeoutMs: number;
  /** Called for each run refused at the cap (the metrics hook). */
  onRefused?: (runId: string) => void;
}

export interface Gate {
  sample: boolean;
  reason: string;
}

/** How many ended runs are remembered (for late stf_ready after end_run). */
const KEEP_ENDED = 64;

/**
 * The workflow runner stamps `state`/`substate` on lifecycle messages; daqsim does not, so a
 * message without them implies the testbed's usual pair (docs/testbed-interface.md, "Run states and the usual sequence"): run_imminent →
 * beam/not_ready, start_run and resume_run → run/physics, pause_run → run/standby. end_run keeps
 * the last pair, so an STF announced late (the data agent lags) is judged by when it was taken.
 */
const IMPLIED: Record<string, [string, string] | null> = {
  run_imminent: ['beam', 'not_ready'],
  start_run: ['run', 'physics'],
  resume_run: ['run', 'physics'],
  pause_run: ['run', 'standby'],
  end_run: null,
};

/**
 * Bounded: at most `maxRuns` runs are tracked (a producer inventing run ids cannot grow the agent,
 * nor the summaries it publishes every cycle), and a run that stays silent for the idle timeout
 * is closed (expireIdle), as if its end_run had been lost. A run refused at the cap is counted;
 * its STFs are still sampled, only without per-run counts.
 *
 * The bookkeeping is this class's alone: a run's counts, sample-size histogram and error tally,
 * and the totals over all runs, change only through countAttempt, countLate, record and takeBack;
 * everyone else reads them (the scheduler fills a Tally per attempt and hands it over).
 */
export class RunStates {
  private readonly runs = new Map<string, Run>();
  /**
   * STF names per run, for the distinct count and to tell a late STF from a redelivered one; kept
   * as long as the run is remembered (KEEP_ENDED ended runs), as fingerprints (a scan's run may have
   * millions of STFs).
   */
  private readonly names = new Map<string, NameSet>();
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Runs not tracked because maxRuns were tracked already. */
  refused = 0;
  /** Counts over all runs, including STFs whose message names no run or whose run was refused. */
  private readonly sums: RunCounts = emptyCounts();
  private readonly bounds: RunBounds;

  constructor(bounds: Partial<RunBounds> = {}) {
    this.bounds = {
      maxRuns: bounds.maxRuns ?? DEFAULT_MAX_RUNS,
      idleTimeoutMs: bounds.idleTimeoutMs ?? DEFAULT_RUN_IDLE_TIMEOUT_S * 1000,
      onRefused: bounds.onRefused,
    };
  }

  get size(): number {
    return this.runs.size;
  }

  get totals(): Readonly<RunCounts> {
    return this.sums;
  }

  get(runId: string): RunInfo | undefined {
    return this.runs.get(runId);
  }

  all(): RunInfo[] {
    return [...this.runs.values()];
  }

  /** The run, created if needed; null when maxRuns are tracked and none can make room. */
  getOrCreate(
    runId: string,
    executionId: string | null = null,
    namespace: string | null = null,
    now = Date.now(),
  ): RunInfo | null {
    return this.track(runId, executionId, namespace, now);
  }

  private track(
    runId: string,
    executionId: string | null,
    namespace: string | null,
    now: number,
  ): Run | null {
    let run = this.runs.get(runId);
    if (!run) {
      if (this.runs.size >= this.bounds.maxRuns && !this.evictEnded()) {
        this.refused++;
        this.bounds.onRefused?.(runId);
        return null;
      }
      run = {
        runId,
        executionId,
        namespace,
        phase: 'imminent',
        announced: false,
        state: null,
        substate: null,
        counts: emptyCounts(),
        sizeHistogram: SIZE_EDGES.map(() => 0),
        errors: {},
        firstSeen: new Date(now),
        endedAt: null,
        lastSeen: now,
        timedOut: false,
        expectedStfs: null,
        stfsSeen: 0,
        finalSent: false,
      };
      this.runs.set(runId, run);
    }
    run.lastSeen = now;
    if (run.timedOut) {
      // Traffic again after a timeout: the run was not over after all.
      run.timedOut = false;
      run.phase = run.state === 'run' && run.substate === 'standby' ? 'standby' : 'physics';
      run.endedAt = null;
    }
    if (executionId && !run.executionId) run.executionId = executionId;
    return run;
  }

  /**
   * Closes the runs that had no message for the idle timeout and returns them (their final
   * summary is the caller's). They stay remembered like ended runs, within the same bound.
   */
  expireIdle(now = Date.now()): RunInfo[] {
    const expired: Run[] = [];
    for (const run of this.runs.values()) {
      if (run.phase === 'ended' || now - run.lastSeen < this.bounds.idleTimeoutMs) continue;
      run.phase = 'ended';
      run.endedAt = new Date(now);
      run.timedOut = true;
      expired.push(run);
    }
    if (expired.length > 0) this.prune();
    return expired;
  }

  /** An attempt at an stf_ready of the run (null: of no tracked run); counted at once, never taken back. */
  countAttempt(runId: string | null): void {
    this.sums.stfAttempts++;
    const run = runId ? this.runs.get(runId) : undefined;
    if (run) run.counts.stfAttempts++;
  }

  /**
   * A new STF of the run arrived after its final status. Like attempts, counted once and never
   * taken back: only the first attempt sees the STF as new.
   */
  countLate(runId: string): void {
    this.sums.stfsLate++;
    const run = this.runs.get(runId);
    if (run) run.counts.stfsLate++;
  }

  /**
   * Adds what one attempt at an stf_ready counted to the totals and, when the run is tracked, to
   * the run's counts, error tally and size histogram.
   */
  record(runId: string | null, tally: Tally): void {
    this.add(runId, tally, 1);
  }

  /** Takes back a tally a retry supersedes (the retry counts instead); once, however often asked. */
  takeBack(runId: string | null, tally: Tally): void {
    if (tally.reverted) return;
    tally.reverted = true;
    this.add(runId, tally, -1);
  }

  private add(runId: string | null, tally: Tally, sign: 1 | -1): void {
    const run = runId ? this.runs.get(runId) : undefined;
    for (const [field, n] of Object.entries(tally.counts) as [keyof RunCounts, number][]) {
      this.sums[field] += sign * n;
      if (run) run.counts[field] += sign * n;
    }
    if (!run) return;
    for (const [code, n] of Object.entries(tally.errors)) {
      const left = (run.errors[code] ?? 0) + sign * n;
      if (left > 0) run.errors[code] = left;
      else delete run.errors[code];
    }
    for (const b of tally.buckets) run.sizeHistogram[b] = (run.sizeHistogram[b] ?? 0) + sign;
  }

  /** Forgets the oldest ended run to make room; false when every tracked run is active. */
  private evictEnded(): boolean {
    for (const run of this.runs.values()) {
      if (run.phase === 'ended') {
        this.forget(run.runId);
        return true;
      }
    }
    return false;
  }

  /** Applies a lifecycle message; returns the run, or null when it names no run. */
  apply(msg: RunLifecycle): RunInfo | null {
    if (!msg.runId) return null;
    const wasEnded = this.runs.get(msg.runId)?.phase === 'ended';
    const run = this.track(msg.runId, msg.executionId, msg.namespace, Date.now());
    if (!run) return null;
    run.announced = true;
    if (msg.executionId) run.executionId = msg.executionId;
    const implied = IMPLIED[msg.msgType];
    if (implied) {
      run.state = msg.state ?? implied[0];
      run.substate = msg.substate ?? implied[1];
    }
    switch (msg.msgType) {
      case 'run_imminent':
        // A new run_imminent for a known run starts it afresh (a re-run or a restarted workflow).
        if (wasEnded) {
          run.counts = emptyCounts();
          run.sizeHistogram = SIZE_EDGES.map(() => 0);
          run.errors = {};
          run.endedAt = null;
          run.expectedStfs = null;
          run.stfsSeen = 0;
          run.finalSent = false;
          this.names.delete(run.runId);
        }
        run.phase = 'imminent';
        break;
      case 'start_run':
      case 'resume_run':
        run.phase = 'physics';
        break;
      case 'pause_run':
        run.phase = 'standby';
        break;
      case 'end_run':
        run.phase = 'ended';
        run.endedAt = new Date();
        if (msg.totalStfFiles !== null) run.expectedStfs = msg.totalStfFiles;
        this.prune();
        break;
    }
    return run;
  }

  /**
   * Samples only in run/physics when asked to; the STF's own state/substate wins over the run's,
   * and when nothing is known the STF is sampled: never drop data on a guess.
   */
  gate(stf: StfReady, sampleOnlyInPhysics: boolean): Gate {
    if (!sampleOnlyInPhysics) return { sample: true, reason: 'sampling in every state' };
    if (stf.state || stf.substate) return judge(stf.state, stf.substate, 'stf_ready');
    const run = stf.runId ? this.runs.get(stf.runId) : undefined;
    if (!run || (!run.state && !run.substate)) return { sample: true, reason: 'run state unknown' };
    return judge(run.state, run.substate, `run ${run.runId}`);
  }

  /**
   * Notes an STF of the run; true when it is new to the run (a retry or redelivery is not). Wakes
   * whoever waits for the run's STFs (the end of the run).
   */
  noteStf(run: RunInfo, stfName: string): boolean {
    let names = this.names.get(run.runId);
    if (!names) {
      names = new NameSet();
      this.names.set(run.runId, names);
    }
    if (!names.add(stfName)) return false;
    run.stfsSeen++;
    const waiting = this.waiters.get(run.runId);
    this.waiters.delete(run.runId);
    for (const wake of waiting ?? []) wake();
    return true;
  }

  /** Resolves at the next new STF of the run. */
  nextStf(runId: string): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(runId) ?? new Set();
      this.waiters.set(runId, set.add(resolve));
    });
  }

  /** The final status is out: later new STFs of the run count as late. */
  markFinal(run: RunInfo): void {
    run.finalSent = true;
  }

  private prune(): void {
    const ended = [...this.runs.values()].filter((r) => r.phase === 'ended');
    for (const run of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) this.forget(run.runId);
  }

  private forget(runId: string): void {
    this.runs.delete(runId);
    this.names.delete(runId);
    this.waiters.delete(runId);
  }
}

function judge(state: string | null, substate: string | null, source: string): Gate {
  const ok = (state === null || state === 'run') && (substate === null || substate === 'physics');
  return { sample: ok, reason: `${source} is ${state ?? '?'}/${substate ?? '?'}` };
}
