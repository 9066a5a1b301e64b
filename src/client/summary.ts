// The summary the client prints when it stops (Ctrl+C, SIGTERM): what was seen, per run and in total.

import { padEnd, padStart, paint } from './ansi.js';
import { safe } from './fields.js';
import { duration, hms, humanBytes, int, rate } from './format.js';
import type { ClientStats, RunView } from './stats.js';

export interface SummaryOptions {
  color: boolean;
}

export function formatSummary(stats: ClientStats, options: SummaryOptions): string {
  const { color } = options;
  const now = stats.now();
  const sizes = stats.sizeSummary();
  const statuses = [...stats.byStatus.entries()].map(([s, k]) => `${safe(s, 20)} ${int(k)}`).join(', ');
  const runs = stats.runViews();
  const label = (s: string) => paint(padEnd(s, 14), 'bold', color);
  const lines = [
    paint('swf-fastmon client summary', 'bold', color),
    `  ${label('uptime')}${duration(now - stats.startedAt)} (since ${hms(new Date(stats.startedAt))})`,
    `  ${label('samples')}${int(stats.samples)} TF samples received${statuses ? ` (${statuses})` : ''}`,
    `  ${label('data volume')}${humanBytes(stats.bytes)}${stats.unsized > 0 ? ` (${int(stats.unsized)} samples without a size)` : ''}`,
    `  ${label('sizes')}min ${humanBytes(sizes.min)}, mean ${humanBytes(sizes.mean)}, max ${humanBytes(sizes.max)}`,
    `  ${label('overall rate')}${rate(stats.overallRate())} TF samples/s (last minute ${rate(stats.currentRate())}/s)`,
    `  ${label('messages')}${int(stats.messages)}${stats.ignored > 0 ? ` (${int(stats.ignored)} ignored)` : ''}`,
    `  ${label('runs')}${runs.length}${stats.runsDropped > 0 ? ` shown, ${int(stats.runsDropped)} older ones only in the totals` : ''}`,
  ];
  if (runs.length > 0) {
    lines.push(
      paint(
        `    ${runRow(['run', 'state', 'samples', 'STFs', 'bytes', 'mean size', 'rate/s'])}`,
        'dim',
        color,
      ),
    );
    for (const r of runs) lines.push(`    ${runRow(runCells(r))}`);
  }
  return `${lines.join('\n')}\n`;
}

function runCells(r: RunView): string[] {
  return [
    safe(r.run, 12),
    r.state,
    int(r.samples),
    `${r.stfsApproximate ? '~' : ''}${int(r.stfs)}`,
    humanBytes(r.bytes),
    humanBytes(r.meanSize),
    rate(r.rate),
  ];
}

const WIDTHS = [12, 9, 9, 8, 10, 10, 8];

function runRow(cells: string[]): string {
  return cells
    .map((c, i) => (i < 2 ? padEnd(c, WIDTHS[i]!) : padStart(c, WIDTHS[i]!)))
    .join(' ')
    .trimEnd();
}

/**
 * The same summary as one JSON object, for `--json`: stdout then carries only JSON lines, so
 * `client --json | jq .` reads to the end. Tagged `msg_type: fastmon_client_summary` so a consumer
 * of the stream tells it from the notifications.
 */
export function summaryObject(stats: ClientStats): Record<string, unknown> {
  const now = stats.now();
  const sizes = stats.sizeSummary();
  return {
    msg_type: 'fastmon_client_summary',
    uptime_s: Math.round((now - stats.startedAt) / 100) / 10,
    started_at: new Date(stats.startedAt).toISOString(),
    tf_samples: stats.samples,
    by_status: Object.fromEntries(stats.byStatus),
    bytes: stats.bytes,
    unsized_samples: stats.unsized,
    sample_size: { min: sizes.min, mean: sizes.mean, max: sizes.max },
    rate_per_s: { overall: stats.overallRate(), last_minute: stats.currentRate() },
    messages: stats.messages,
    ignored: stats.ignored,
    runs_dropped: stats.runsDropped,
    runs: stats.runViews().map((r) => ({
      run_id: r.run,
      state: r.state,
      namespace: r.namespace,
      execution_id: r.executionId,
      stfs: r.stfs,
      stfs_approximate: r.stfsApproximate,
      tf_samples: r.samples,
      failed: r.failed,
      bytes: r.bytes,
      mean_size: r.meanSize,
      rate_per_s: r.rate,
      reported: r.reported,
    })),
  };
}
