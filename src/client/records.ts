// Per-run and per-agent records behind ClientStats, and the views the screens read from them.

import type { ClientMessage } from './fields.js';
import { type HistogramBucket, RingSeries } from './series.js';

export const RATE_WINDOW_S = 60;
/** A run or agent that said it is active but has been silent this long (or 3 summary cycles) is 'quiet'. */
export const QUIET_MS = 60_000;

export interface ReportedCounts {
  tfFiles: number | null;
  stfsSeen: number | null;
  bytes: number | null;
}

export interface RunView {
  run: string;
  /** imminent, active, paused, ended, error (explicit), or idle/quiet (derived from silence). */
  state: string;
  namespace: string | null;
  executionId: string | null;
  stfs: number;
  /** true once the per-run name set is full and further STFs are counted as name changes. */
  stfsApproximate: boolean;
  samples: number;
  failed: number;
  bytes: number;
  minSize: number | null;
  meanSize: number | null;
  maxSize: number | null;
  firstSeen: number;
  lastSeen: number;
  /** TF samples per second over the last minute (or since the run was first seen, if more recent). */
  rate: number;
  /** The agents' own counts from their latest fastmon_summary / fastmon_status, summed over agents. */
  reported: ReportedCounts;
}

export interface AgentView {
  name: string;
  lastSeen: number;
  /** started/completed/error from fastmon_status, 'running'/'final' from fastmon_summary, 'sampling' from samples. */
  lastStatus: string;
  lastMessage: string | null;
  /** Derived: 'ok', 'quiet' (silent for 3 cycles), 'error' (last status error, or errors reported). */
  health: 'ok' | 'quiet' | 'error';
  outboxDepth: number | null;
  errors: Record<string, number>;
  samples: number;
  failedSamples: number;
}

export class SizeStats {
  n = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  add(size: number): void {
    this.n++;
    this.sum += size;
    if (size < this.min) this.min = size;
    if (size > this.max) this.max = size;
  }

  get mean(): number | null {
    return this.n === 0 ? null : this.sum / this.n;
  }
  get minOrNull(): number | null {
    return this.n === 0 ? null : this.min;
  }
  get maxOrNull(): number | null {
    return this.n === 0 ? null : this.max;
  }
}

export class RunRecord {
  state: string | null = null;
  namespace: string | null = null;
  executionId: string | null = null;
  stfNames = new Set<string>();
  stfExtra = 0;
  lastStf: string | null = null;
  samples = 0;
  failed = 0;
  sizes = new SizeStats();
  lastSeen: number;
  lastSampleAt: number | null = null;
  cycleMs = 10_000;
  readonly perSecond = new RingSeries(1000, RATE_WINDOW_S);
  /** Latest counts per agent; a handful of agents per run at most, capped anyway. */
  readonly reported = new Map<string, ReportedCounts>();

  constructor(
    readonly run: string,
    readonly firstSeen: number,
  ) {
    this.lastSeen = firstSeen;
  }
}

export class AgentRecord {
  lastStatus = '-';
  lastMessage: string | null = null;
  outboxDepth: number | null = null;
  cycleMs = 10_000;
  /** Errors by code from each run's latest summary (cumulative per run on the agent's side). */
  readonly errorsByRun = new Map<string, Record<string, number>>();
  samples = 0;
  failedSamples = 0;

  constructor(
    readonly name: string,
    public lastSeen: number,
  ) {}
}

/** Moves `key` to the most-recent end of an insertion-ordered map and evicts from the oldest end. */
export function touch<K, V>(map: Map<K, V>, key: K, make: () => V, cap: number): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    while (map.size >= cap) map.delete(map.keys().next().value as K);
  } else {
    map.delete(key);
  }
  map.set(key, value);
  return value;
}

export function put<K, V>(map: Map<K, V>, key: K, value: V, cap: number): void {
  touch(map, key, () => value, cap);
  map.set(key, value);
}

export function runView(r: RunRecord, now: number): RunView {
  const windowS = Math.min(RATE_WINDOW_S, Math.max(1, (now - r.firstSeen) / 1000));
  const silentMs = now - r.lastSeen;
  let state = r.state;
  if (state === null) state = r.lastSampleAt !== null && now - r.lastSampleAt <= QUIET_MS ? 'active' : 'idle';
  else if (state === 'active' && silentMs > Math.max(QUIET_MS, 3 * r.cycleMs)) state = 'quiet';
  return {
    run: r.run,
    state,
    namespace: r.namespace,
    executionId: r.executionId,
    stfs: r.stfNames.size + r.stfExtra,
    stfsApproximate: r.stfExtra > 0,
    samples: r.samples,
    failed: r.failed,
    bytes: r.sizes.sum,
    minSize: r.sizes.minOrNull,
    meanSize: r.sizes.mean,
    maxSize: r.sizes.maxOrNull,
    firstSeen: r.firstSeen,
    lastSeen: r.lastSeen,
    rate: r.perSecond.sum(now) / windowS,
    reported: sumReported(r.reported.values()),
  };
}

export function agentView(a: AgentRecord, now: number): AgentView {
  const errors: Record<string, number> = {};
  for (const byCode of a.errorsByRun.values()) {
    for (const [code, n] of Object.entries(byCode)) errors[code] = (errors[code] ?? 0) + n;
  }
  const quiet = now - a.lastSeen > Math.max(QUIET_MS / 2, 3 * a.cycleMs);
  const health = a.lastStatus === 'error' ? 'error' : quiet ? 'quiet' : 'ok';
  return {
    name: a.name,
    lastSeen: a.lastSeen,
    lastStatus: a.lastStatus,
    lastMessage: a.lastMessage,
    health,
    outboxDepth: a.outboxDepth,
    errors,
    samples: a.samples,
    failedSamples: a.failedSamples,
  };
}

export function sumReported(all: Iterable<ReportedCounts>): ReportedCounts {
  const out: ReportedCounts = { tfFiles: null, stfsSeen: null, bytes: null };
  for (const c of all) {
    for (const key of ['tfFiles', 'stfsSeen', 'bytes'] as const) {
      const v = c[key];
      if (v !== null) out[key] = (out[key] ?? 0) + v;
    }
  }
  return out;
}

/** A fastmon_summary histogram `{edges_bytes, counts}` as buckets, or null when it is malformed. */
export function rebin(h: ClientMessage): HistogramBucket[] | null {
  const edges = h.edges_bytes;
  const counts = h.counts;
  if (!Array.isArray(edges) || !Array.isArray(counts)) return null;
  const out: HistogramBucket[] = [];
  for (let i = 0; i < Math.min(edges.length, counts.length, 64); i++) {
    const lo = edges[i];
    const n = counts[i];
    const hi = edges[i + 1];
    if (typeof lo !== 'number' || !Number.isFinite(lo) || lo < 0) return null;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) continue;
    out.push({ lo, hi: typeof hi === 'number' ? hi : null, count: n });
  }
  return out;
}
