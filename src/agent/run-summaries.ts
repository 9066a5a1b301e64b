// The agent's periodic fastmon_summary: one per active run every cycle, and a final one on end_run.

import { messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { fastmonSummary } from '../messaging/codec.js';
import type { Metrics } from '../ops/metrics.js';
import type { RunCounts } from '../run/counts.js';
import { SIZE_EDGES } from '../run/counts.js';
import type { RunInfo, RunStates } from '../run/run-states.js';
import type { Broadcaster } from '../sinks/broadcast.js';

export interface RunSummaryDeps {
  runs: RunStates;
  broadcaster: Broadcaster;
  processedBy: () => string;
  outboxDepth: () => number | null;
  intervalS: number;
  /** Runs silent this long are closed with a final summary (timed_out: true). */
  idleTimeoutS: number;
  logger: Logger;
  metrics: Metrics;
}

interface Previous {
  at: number;
  counts: RunCounts;
}

/**
 * Rates are over the last cycle (counts now minus counts at the previous summary), so a crew
 * sees a stall within one cycle. A run is active from its first message until end_run.
 */
export class RunSummaries {
  private timer: NodeJS.Timeout | null = null;
  private readonly previous = new Map<string, Previous>();
  private publishing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: RunSummaryDeps) {}

  start(): void {
    // Idle runs are closed even when summaries are off, so run state stays bounded either way.
    const periodS =
      this.deps.intervalS > 0 ? this.deps.intervalS : Math.min(60, Math.max(1, this.deps.idleTimeoutS / 4));
    this.timer = setInterval(() => {
      this.publishing = this.publishing.then(() => this.cycle());
    }, periodS * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.publishing;
  }

  /** The last word on a run, published after its in-flight STFs finished. */
  async final(run: RunInfo): Promise<void> {
    if (this.deps.intervalS > 0) await this.publish(run, true);
    this.previous.delete(run.runId);
  }

  private async cycle(): Promise<void> {
    const { runs, logger, metrics } = this.deps;
    for (const run of runs.expireIdle()) {
      metrics.runsTimedOut.inc();
      logger.warn(
        { run: run.runId, idleTimeoutS: this.deps.idleTimeoutS, counts: run.counts },
        'run closed: no message for the idle timeout (its end_run never came)',
      );
      await this.final(run);
    }
    metrics.runsTracked.set(runs.size);
    if (this.deps.intervalS <= 0) return;
    for (const run of runs.all()) {
      if (run.phase !== 'ended') await this.publish(run, false);
    }
  }

  private async publish(run: RunInfo, final: boolean): Promise<void> {
    const now = Date.now();
    const before = this.previous.get(run.runId) ?? { at: run.firstSeen.getTime(), counts: zero(run.counts) };
    const seconds = Math.max((now - before.at) / 1000, 1e-3);
    const body = fastmonSummary({
      processedBy: this.deps.processedBy(),
      runId: run.runId,
      executionId: run.executionId,
      final,
      timedOut: run.timedOut,
      cycleS: this.deps.intervalS,
      counts: run.counts,
      rates: {
        stfsPerS: (run.counts.stfsReceived - before.counts.stfsReceived) / seconds,
        tfFilesPerS: (run.counts.tfsRegistered - before.counts.tfsRegistered) / seconds,
        bytesPerS: (run.counts.bytesSampled - before.counts.bytesSampled) / seconds,
      },
      histogram: { edges: SIZE_EDGES, counts: run.sizeHistogram },
      errors: run.errors,
      outboxDepth: this.deps.outboxDepth(),
    });
    this.previous.set(run.runId, { at: now, counts: { ...run.counts } });
    try {
      await this.deps.broadcaster.publish(body);
      this.deps.metrics.broadcasts.inc({ msg_type: 'fastmon_summary', result: 'ok' });
    } catch (err) {
      this.deps.metrics.broadcasts.inc({ msg_type: 'fastmon_summary', result: 'failed' });
      this.deps.logger.warn(
        { run: run.runId, code: 'PUBLISH_FAILED' },
        `fastmon_summary not broadcast: ${messageOf(err)}`,
      );
    }
  }
}

function zero(counts: RunCounts): RunCounts {
  return Object.fromEntries(Object.keys(counts).map((k) => [k, 0])) as unknown as RunCounts;
}
