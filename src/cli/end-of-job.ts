// The end-of-job summary of agent, scan and watch printed to stdout: per run and in total, in words an operator reads at a glance.

import type { RunCounts } from '../run/counts.js';
import type { RunInfo } from '../run/run-states.js';

export function endOfJobSummary(
  agentName: string,
  elapsedMs: number,
  totals: RunCounts,
  runs: RunInfo[],
): string {
  const lines = [`swf-fastmon summary: agent ${agentName}, ${(elapsedMs / 1000).toFixed(1)} s`];
  for (const run of runs) lines.push(`  run ${run.runId} (${phaseLabel(run)}): ${countsLine(run.counts)}`);
  lines.push(`  total: ${countsLine(totals)}`);
  return `${lines.join('\n')}\n`;
}

/** A run seen only through its STFs (found on disk, or stf_ready alone) has no phase to show. */
function phaseLabel(run: RunInfo): string {
  return run.announced ? run.phase : 'no run messages seen';
}

function countsLine(c: RunCounts): string {
  const parts = [
    `${c.stfsReceived} STFs received`,
    `${c.stfsSampled} sampled`,
    `${c.stfsSkipped} skipped`,
    `${c.stfsFailed} failed`,
  ];
  if (c.stfsDuplicate) parts.push(`${c.stfsDuplicate} duplicate`);
  if (c.stfsWithoutFile) parts.push(`${c.stfsWithoutFile} without file`);
  if (c.stfsLate) parts.push(`${c.stfsLate} after the run's final status`);
  // Retries inside the agent: handled more often than delivered.
  if (c.stfAttempts > c.stfsReceived) parts.push(`${c.stfAttempts} attempts`);
  const fresh = c.tfsRegistered - c.tfsExisting;
  return `${parts.join(', ')}; ${c.tfsRegistered} TF samples registered (${fresh} new, ${c.tfsExisting} already there; ${humanBytes(c.bytesSampled)}), ${c.tfsFailed} failed`;
}

export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}
