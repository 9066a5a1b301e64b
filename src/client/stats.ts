// What the client has seen so far, per run and per agent, in memory that stays bounded over days of data taking.

import { type ClientMessage, count, num, obj, runOf, str } from './fields.js';
import {
  AgentRecord,
  type AgentView,
  agentView,
  put,
  RATE_WINDOW_S,
  type ReportedCounts,
  RunRecord,
  type RunView,
  rebin,
  runView,
  SizeStats,
  touch,
} from './records.js';
import { type HistogramBucket, LOG2_BUCKETS, log2Buckets, log2Index, RingSeries } from './series.js';

export type { ClientMessage } from './fields.js';
export type { AgentView, ReportedCounts, RunView } from './records.js';

export interface StatsLimits {
  /** Runs kept, the most recently active; older ones only remain in the totals. */
  maxRuns: number;
  /** Agents (processed_by) kept, the most recently heard from. */
  maxAgents: number;
  /** Distinct STF names remembered per run; beyond it, STFs are counted as changes of name (approximate). */
  stfNamesPerRun: number;
  /** Distinct `status` values counted; later ones go to 'other'. */
  maxStatuses: number;
}

const DEFAULT_LIMITS: StatsLimits = { maxRuns: 50, maxAgents: 50, stfNamesPerRun: 5000, maxStatuses: 16 };

/** The TF-rate series behind the sparkline: 10-s buckets over the last 10 minutes. */
export const SERIES_BUCKET_MS = 10_000;
export const SERIES_LENGTH = 60;
const LIFECYCLE_STATE: Record<string, string> = {
  run_imminent: 'imminent',
  start_run: 'active',
  resume_run: 'active',
  pause_run: 'paused',
  end_run: 'ended',
};
const STATUS_STATE: Record<string, string> = { started: 'active', completed: 'ended', error: 'error' };

export class ClientStats {
  readonly startedAt: number;
  private readonly limits: StatsLimits;
  /** Bumped by every add(); the dashboard redraws when it changes. */
  version = 0;
  messages = 0;
  ignored = 0;
  readonly byKind = new Map<string, number>();
  samples = 0;
  bytes = 0;
  /** Samples whose file_size_bytes was missing or not a number. */
  unsized = 0;
  runsDropped = 0;
  readonly byStatus = new Map<string, number>();
  private readonly sizes = new SizeStats();
  private readonly sizeCounts = new Float64Array(LOG2_BUCKETS);
  private readonly series = new RingSeries(SERIES_BUCKET_MS, SERIES_LENGTH);
  private readonly runs = new Map<string, RunRecord>();
  private readonly agents = new Map<string, AgentRecord>();
  /** Latest fastmon_summary histogram per agent and run, for when no sample sizes are seen directly. */
  private readonly summaryHistograms = new Map<string, HistogramBucket[]>();

  constructor(
    readonly now: () => number = () => Date.now(),
    limits: Partial<StatsLimits> = {},
  ) {
    this.startedAt = now();
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  add(m: ClientMessage): void {
    this.version++;
    this.messages++;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      this.ignored++;
      return;
    }
    const t = this.now();
    // The original agent's notifications carry no msg_type worth trusting; a tf_filename is enough.
    const kind = str(m, 'msg_type') ?? (m.tf_filename !== undefined ? 'tf_file_registered' : null);
    const kindKey = this.byKind.has(kind ?? '-') || this.byKind.size < 32 ? (kind ?? '-') : 'other';
    this.byKind.set(kindKey, (this.byKind.get(kindKey) ?? 0) + 1);
    if (kind === 'tf_file_registered') this.addSample(m, t);
    else if (kind === 'fastmon_summary') this.addSummary(m, t);
    else if (kind === 'fastmon_status') this.addStatus(m, t);
    else if (kind !== null && kind in LIFECYCLE_STATE) this.run(runOf(m), t).state = LIFECYCLE_STATE[kind]!;
    else this.ignored++;
  }

  private run(id: string | null, t: number): RunRecord {
    const key = id ?? '-';
    const before = this.runs.size;
    const existed = this.runs.has(key);
    const record = touch(this.runs, key, () => new RunRecord(key, t), this.limits.maxRuns);
    if (!existed && this.runs.size <= before) this.runsDropped++;
    record.lastSeen = t;
    return record;
  }

  private agent(name: string | null, t: number): AgentRecord | null {
    if (name === null) return null;
    const record = touch(this.agents, name, () => new AgentRecord(name, t), this.limits.maxAgents);
    record.lastSeen = t;
    return record;
  }

  private addSample(m: ClientMessage, t: number): void {
    const run = this.run(runOf(m), t);
    const agent = this.agent(str(m, 'processed_by') ?? str(m, 'agent_name'), t);
    const status = str(m, 'status') ?? '-';
    const statusKey =
      this.byStatus.has(status) || this.byStatus.size < this.limits.maxStatuses ? status : 'other';
    this.byStatus.set(statusKey, (this.byStatus.get(statusKey) ?? 0) + 1);
    this.samples++;
    run.samples++;
    run.lastSampleAt = t;
    run.namespace = str(m, 'namespace') ?? run.namespace;
    run.executionId = str(m, 'execution_id') ?? run.executionId;
    if (status === 'failed') run.failed++;
    if (agent) {
      agent.samples++;
      if (status === 'failed') agent.failedSamples++;
      if (agent.lastStatus === '-') agent.lastStatus = 'sampling';
    }
    this.series.add(t);
    run.perSecond.add(t);

    const stf = str(m, 'stf_filename');
    if (stf !== null && !run.stfNames.has(stf)) {
      if (run.stfNames.size < this.limits.stfNamesPerRun) run.stfNames.add(stf);
      else if (stf !== run.lastStf) run.stfExtra++;
    }
    if (stf !== null) run.lastStf = stf;

    const size = count(m, 'file_size_bytes');
    if (size === null) {
      this.unsized++;
      return;
    }
    this.bytes += size;
    this.sizes.add(size);
    run.sizes.add(size);
    this.sizeCounts[log2Index(size)]! += 1;
  }

  private addSummary(m: ClientMessage, t: number): void {
    const runId = runOf(m);
    const run = this.run(runId, t);
    const name = str(m, 'processed_by');
    const agent = this.agent(name, t);
    const final = m.final === true;
    run.state = final ? 'ended' : run.state === 'ended' || run.state === 'error' ? run.state : 'active';
    const cycle = num(m, 'cycle_s');
    if (cycle !== null && cycle > 0) run.cycleMs = cycle * 1000;
    this.report(run, name, {
      tfFiles: count(m, 'tf_files_registered'),
      stfsSeen: count(m, 'stfs_seen'),
      bytes: count(m, 'bytes_sampled'),
    });
    if (agent) {
      agent.lastStatus = final ? 'final' : 'running';
      agent.outboxDepth = count(m, 'outbox_depth') ?? agent.outboxDepth;
      if (cycle !== null && cycle > 0) agent.cycleMs = cycle * 1000;
      const errors = obj(m, 'errors');
      if (errors) {
        const clean: Record<string, number> = {};
        for (const [code, n] of Object.entries(errors).slice(0, 32)) {
          if (typeof n === 'number' && Number.isFinite(n) && n > 0) clean[code] = n;
        }
        put(agent.errorsByRun, runId ?? '-', clean, this.limits.maxRuns);
      }
    }
    const histogram = obj(m, 'sample_size_histogram');
    if (histogram) {
      const buckets = rebin(histogram);
      if (buckets) {
        const key = `${name ?? '-'}\u0000${runId ?? '-'}`;
        put(this.summaryHistograms, key, buckets, this.limits.maxRuns * 2);
      }
    }
  }

  private addStatus(m: ClientMessage, t: number): void {
    const runId = runOf(m);
    const status = str(m, 'status');
    const name = str(m, 'processed_by');
    const agent = this.agent(name, t);
    if (agent) {
      agent.lastStatus = status ?? '-';
      agent.lastMessage = str(m, 'message');
    }
    // A status without run_id is about the agent, not about a run.
    if (runId === null) return;
    const run = this.run(runId, t);
    if (status !== null && status in STATUS_STATE) run.state = STATUS_STATE[status]!;
    this.report(run, name, {
      tfFiles: count(m, 'tf_files_registered'),
      stfsSeen: count(m, 'stfs_received'),
      bytes: count(m, 'bytes_sampled'),
    });
  }

  private report(run: RunRecord, agent: string | null, counts: ReportedCounts): void {
    if (counts.tfFiles === null && counts.stfsSeen === null && counts.bytes === null) return;
    put(run.reported, agent ?? '-', counts, 8);
  }

  /** Runs, most recently active first. */
  runViews(now = this.now()): RunView[] {
    const views: RunView[] = [];
    for (const r of this.runs.values()) views.push(runView(r, now));
    return views.reverse();
  }

  agentViews(now = this.now()): AgentView[] {
    const views: AgentView[] = [];
    for (const a of this.agents.values()) views.push(agentView(a, now));
    return views.reverse();
  }

  sizeSummary(): { min: number | null; mean: number | null; max: number | null; n: number } {
    return { min: this.sizes.minOrNull, mean: this.sizes.mean, max: this.sizes.maxOrNull, n: this.sizes.n };
  }

  /**
   * Sample sizes in log2 buckets from 1 KiB. The client's own count of the samples it saw is exact and is
   * preferred; when it saw none with a size (subscribed to summaries only, or joined late), it shows the
   * agents' latest fastmon_summary histograms, summed over agents and runs and re-binned by lower edge
   * (exact when the agent uses the same log2 edges, which it does by default).
   */
  sizeHistogram(): { source: 'samples' | 'summaries' | 'none'; buckets: HistogramBucket[] } {
    if (this.sizes.n > 0) return { source: 'samples', buckets: log2Buckets(this.sizeCounts) };
    if (this.summaryHistograms.size === 0) return { source: 'none', buckets: log2Buckets([]) };
    const merged = new Float64Array(LOG2_BUCKETS);
    for (const buckets of this.summaryHistograms.values()) {
      for (const b of buckets) merged[log2Index(b.lo)]! += b.count;
    }
    return { source: 'summaries', buckets: log2Buckets(merged) };
  }

  /** TF samples per 10-s bucket over the last 10 minutes, oldest first. */
  rateSeries(now = this.now()): number[] {
    return this.series.values(now);
  }

  /**
   * TF samples per second of each 10-s bucket of rateSeries(), each over the part of the bucket the
   * client has seen (after its start, up to now): the first and the current bucket are partial, and
   * dividing their counts by 10 s showed "peak 3.50/s" beside "now 32.9/s" a second after start.
   */
  bucketRates(now = this.now()): number[] {
    const counts = this.series.values(now);
    const first = (Math.floor(now / SERIES_BUCKET_MS) - (counts.length - 1)) * SERIES_BUCKET_MS;
    return counts.map((n, i) => (n === 0 ? 0 : n / this.seenSeconds(first + i * SERIES_BUCKET_MS, now)));
  }

  /**
   * TF samples per second over the last minute (or since start, if more recent), from the same
   * buckets as bucketRates(): an average of those rates, so never above their peak.
   */
  currentRate(now = this.now()): number {
    const counts = this.series.values(now);
    const buckets = Math.round((RATE_WINDOW_S * 1000) / SERIES_BUCKET_MS);
    const nowBucket = Math.floor(now / SERIES_BUCKET_MS);
    let samples = 0;
    let seconds = 0;
    for (let k = 0; k < buckets; k++) {
      samples += counts[counts.length - 1 - k] ?? 0;
      const start = (nowBucket - k) * SERIES_BUCKET_MS;
      if (start + SERIES_BUCKET_MS > this.startedAt) seconds += this.seenSeconds(start, now, 0);
    }
    return samples / Math.max(1, seconds);
  }

  /** Seconds of the bucket starting at `start` between the client's start and `now` (at least `floor`). */
  private seenSeconds(start: number, now: number, floor = 1): number {
    const from = Math.max(start, this.startedAt);
    const to = Math.min(start + SERIES_BUCKET_MS, now);
    return Math.max(floor, (to - from) / 1000);
  }

  /** TF samples per second since the client started. */
  overallRate(now = this.now()): number {
    return this.samples / Math.max(1, (now - this.startedAt) / 1000);
  }

  /** What the client holds, for tests and for a debug line: every number here stays bounded. */
  footprint(): {
    runs: number;
    agents: number;
    stfNames: number;
    summaryHistograms: number;
    statuses: number;
  } {
    let stfNames = 0;
    for (const r of this.runs.values()) stfNames += r.stfNames.size;
    return {
      runs: this.runs.size,
      agents: this.agents.size,
      stfNames,
      summaryHistograms: this.summaryHistograms.size,
      statuses: this.byStatus.size,
    };
  }
}
