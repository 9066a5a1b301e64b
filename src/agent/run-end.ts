// The end of a run: wait for the STFs end_run announced (bounded), then the final summary and fastmon_status.

import { setTimeout as sleep } from 'node:timers/promises';
import { messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { fastmonStatus, type RunClosing } from '../messaging/codec.js';
import type { Metrics } from '../ops/metrics.js';
import type { RunInfo, RunStates } from '../run/run-states.js';
import type { Broadcaster } from '../sinks/broadcast.js';
import type { RunSummaries } from './run-summaries.js';

export interface RunEndDeps {
  runs: RunStates;
  /** Resolves when every STF of the run accepted so far is handled. */
  settleRun: (runId: string) => Promise<void>;
  broadcaster: Broadcaster;
  summaries: () => RunSummaries | null;
  processedBy: () => string;
  graceS: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * The testbed's workflow runner sends end_run right after its last stf_gen, while the data agent
 * sends each stf_ready only after registering the StfFile: end_run routinely overtakes the last
 * STFs of the run. So the run's last word waits until the STFs end_run's `total_stf_files`
 * announced have arrived and are handled, at most `graceS` seconds; the status says when the grace
 * ran out and how many were missing. An STF arriving after that is counted (stfs_late, a metric,
 * a log line with STF_AFTER_RUN_END) and a follow-up status with the run's new counts is sent.
 */
export class RunEnds {
  private readonly abort = new AbortController();
  /** Runs in their grace: a repeated end_run (a redelivery) does not end a run twice. */
  private readonly ending = new Set<string>();

  constructor(private readonly deps: RunEndDeps) {}

  /** Ends a run: waits (bounded), publishes the final summary and status, marks the run final. */
  async close(run: RunInfo): Promise<void> {
    if (this.ending.has(run.runId)) return;
    this.ending.add(run.runId);
    try {
      await this.closeOnce(run);
    } finally {
      this.ending.delete(run.runId);
    }
  }

  private async closeOnce(run: RunInfo): Promise<void> {
    const log = this.deps.logger.child({ run: run.runId });
    const graceExpired = await this.waitForAnnounced(run);
    const closing = this.closing(run, graceExpired, false);
    if (graceExpired) {
      this.deps.metrics.runsIncomplete.inc();
      log.warn(
        { code: 'RUN_INCOMPLETE', expected: closing.expected, seen: closing.seen, missing: closing.missing },
        `run ${run.runId}: ${closing.missing} of the ${closing.expected} STFs announced by end_run had not arrived ` +
          `when the ${this.deps.graceS} s grace ran out`,
      );
    }
    await this.deps.summaries()?.final(run);
    this.deps.runs.markFinal(run);
    await this.publishStatus(run, closing, log);
    log.info({ counts: run.counts, closing }, 'run ended; fastmon_status published');
  }

  /** A follow-up status after an STF arrived past the final one, so the late STF is seen, not lost. */
  async followUp(run: RunInfo): Promise<void> {
    const log = this.deps.logger.child({ run: run.runId });
    await this.publishStatus(run, this.closing(run, false, true), log);
  }

  /** Cuts every wait short (shutdown): the runs end with what has arrived. */
  stop(): void {
    this.abort.abort();
  }

  /** True when the grace ran out (or shutdown came) with announced STFs still missing. */
  private async waitForAnnounced(run: RunInfo): Promise<boolean> {
    const deadline = Date.now() + this.deps.graceS * 1000;
    const signal = this.abort.signal;
    // A run announced per run (the Rucio data agents: one stf_ready without filename) names no STF to wait for.
    const complete = () =>
      run.expectedStfs === null || run.stfsSeen >= run.expectedStfs || run.counts.stfsWithoutFile > 0;
    for (;;) {
      const seen = run.stfsSeen;
      await this.deps.settleRun(run.runId);
      if (run.stfsSeen !== seen) continue; // more arrived while settling: settle those too
      if (complete()) return false;
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return true;
      await Promise.race([
        this.deps.runs.nextStf(run.runId),
        sleep(left, undefined, { signal }).catch(() => {}),
      ]);
    }
  }

  private closing(run: RunInfo, graceExpired: boolean, update: boolean): RunClosing {
    const expected = run.expectedStfs;
    return {
      expected,
      seen: run.stfsSeen,
      missing: expected === null ? 0 : Math.max(0, expected - run.stfsSeen),
      graceExpired,
      graceS: this.deps.graceS,
      update,
    };
  }

  private async publishStatus(run: RunInfo, closing: RunClosing, log: Logger): Promise<void> {
    const c = run.counts;
    const announced = closing.expected === null ? '' : ` (end_run announced ${closing.expected})`;
    let text =
      `run ${run.runId} ended: ${c.stfsSampled} of ${closing.seen} STFs sampled${announced}, ` +
      `${c.tfsRegistered} TF samples registered, ${c.stfsFailed} STFs and ${c.tfsFailed} samples failed`;
    if (closing.graceExpired) {
      text += `; ${closing.missing} announced STFs missing when the ${closing.graceS} s grace ran out`;
    }
    if (closing.update) text += `; update: ${c.stfsLate} STFs arrived after the final status`;
    const status = fastmonStatus({
      processedBy: this.deps.processedBy(),
      status: 'completed',
      message: text,
      runId: run.runId,
      executionId: run.executionId,
      counts: c,
      closing,
    });
    try {
      await this.deps.broadcaster.publish(status);
      this.deps.metrics.broadcasts.inc({ msg_type: 'fastmon_status', result: 'ok' });
    } catch (err) {
      this.deps.metrics.broadcasts.inc({ msg_type: 'fastmon_status', result: 'failed' });
      log.error({ code: 'PUBLISH_FAILED' }, `fastmon_status not broadcast: ${messageOf(err)}`);
    }
  }
}
