// The dashboard's sections, each a pure function of the stats to at most `rows` lines of at most `width` cells.

import { padEnd, padStart, paint, type Style, truncate } from '../ansi.js';
import { safe } from '../fields.js';
import { ago, binaryBytes, duration, hms, humanBytes, int, rate } from '../format.js';
import { errorList } from '../line.js';
import type { HistogramBucket } from '../series.js';
import { type AgentView, type ClientStats, type RunView, SERIES_BUCKET_MS } from '../stats.js';
import { type Column, renderTable } from './table.js';

export interface SectionContext {
  stats: ClientStats;
  width: number;
  color: boolean;
  now: number;
}

const STATE_STYLE: Record<string, Style> = {
  active: 'green',
  imminent: 'cyan',
  paused: 'yellow',
  quiet: 'yellow',
  idle: 'dim',
  ended: 'magenta',
  error: 'red',
};

function title(text: string, detail: string, ctx: SectionContext): string {
  return truncate(`${paint(text, 'bold', ctx.color)}${detail ? `  ${detail}` : ''}`, ctx.width);
}

export function header(ctx: SectionContext, source: string, sourceStatus: string): string[] {
  const { stats, color, now } = ctx;
  const status = safe(sourceStatus, 40);
  const statusStyle: Style = /error|fail|lost|clos|disconn|refus|down/i.test(status)
    ? 'red'
    : /connect|subscri|open|ok|up|live/i.test(status)
      ? 'green'
      : 'yellow';
  const runs = stats.runViews(now);
  const active = runs.filter((r) => r.state === 'active').length;
  const first = [
    paint('swf-fastmon', 'bold', color),
    paint(`[${status}]`, statusStyle, color),
    `up ${duration(now - stats.startedAt)}`,
    hms(new Date(now)),
    safe(source, 120),
  ].join('  ');
  const second = [
    `samples ${paint(int(stats.samples), 'bold', color)}`,
    `data ${paint(humanBytes(stats.bytes), 'bold', color)}`,
    `now ${rate(stats.currentRate(now))}/s`,
    `overall ${rate(stats.overallRate(now))}/s`,
    `runs ${runs.length} (${active} active)`,
    `messages ${int(stats.messages)}`,
  ].join('  ');
  return [truncate(first, ctx.width), truncate(second, ctx.width)];
}

// Cells are plain functions of a row and of the render's clock.
const runColumns = (now: number): Column<RunView>[] => [
  { title: 'run', width: 12, align: 'left', priority: 0, cell: (r) => safe(r.run, 40) },
  {
    title: 'state',
    width: 8,
    align: 'left',
    priority: 1,
    cell: (r) => r.state,
    style: (r) => STATE_STYLE[r.state] ?? null,
  },
  {
    title: 'STFs',
    width: 7,
    align: 'right',
    priority: 3,
    cell: (r) => `${r.stfsApproximate ? '~' : ''}${int(r.stfs)}`,
  },
  { title: 'TF samples', width: 10, align: 'right', priority: 2, cell: (r) => int(r.samples) },
  { title: 'bytes', width: 8, align: 'right', priority: 4, cell: (r) => humanBytes(r.bytes) },
  { title: 'rate/s', width: 7, align: 'right', priority: 5, cell: (r) => rate(r.rate) },
  { title: 'last seen', width: 10, align: 'right', priority: 6, cell: (r) => ago(r.lastSeen, now) },
  { title: 'mean', width: 8, align: 'right', priority: 7, cell: (r) => humanBytes(r.meanSize) },
  {
    title: 'failed',
    width: 6,
    align: 'right',
    priority: 8,
    cell: (r) => int(r.failed),
    style: (r) => (r.failed > 0 ? 'red' : null),
  },
  {
    title: 'agent TFs',
    width: 9,
    align: 'right',
    priority: 9,
    cell: (r) => (r.reported.tfFiles === null ? '-' : int(r.reported.tfFiles)),
  },
];

/** Title, column header and up to `rows - 2` runs, most recent first; the last line says how many are hidden. */
export function runsSection(ctx: SectionContext, rows: number): string[] {
  const runs = ctx.stats.runViews(ctx.now);
  const dropped = ctx.stats.runsDropped;
  const lines = [
    title('RUNS', `${runs.length} kept${dropped > 0 ? `, ${int(dropped)} older dropped` : ''}`, ctx),
  ];
  if (runs.length === 0) return [...lines, '  no TF samples or run messages yet'].slice(0, rows);
  const shown = fitRows(runs, rows - 2);
  lines.push(...renderTable(runColumns(ctx.now), shown, ctx.width, ctx.color));
  if (shown.length < runs.length)
    lines.push(paint(`  … ${runs.length - shown.length} more runs`, 'dim', ctx.color));
  return lines.slice(0, rows);
}

/** All rows if they fit; otherwise one line fewer, for the "… N more" line, unless that leaves none. */
function fitRows<T>(rows: T[], room: number): T[] {
  if (rows.length <= room) return rows;
  return rows.slice(0, Math.max(1, room - 1));
}

const SPARK = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/** Title, sparkline (one cell per 10-s bucket, the newest on the right) and, with room, a time axis. */
export function rateSection(ctx: SectionContext, rows: number): string[] {
  const perBucket = ctx.stats.bucketRates(ctx.now);
  const cells = Math.max(1, Math.min(perBucket.length, ctx.width - 2));
  const values = perBucket.slice(perBucket.length - cells);
  const peak = Math.max(...values);
  const minutes = (cells * SERIES_BUCKET_MS) / 60_000;
  const lines = [
    title(
      'TF RATE',
      `last ${Number.isInteger(minutes) ? minutes : minutes.toFixed(1)} min, 10-s buckets  now ${rate(ctx.stats.currentRate(ctx.now))}/s  peak ${rate(peak)}/s`,
      ctx,
    ),
  ];
  // Zero is the lowest glyph, dimmed, and any non-zero bucket at least the second: an empty bucket and a
  // slow one must look different at a glance.
  const spark = values
    .map((v) =>
      v <= 0 || peak <= 0
        ? paint(SPARK[0]!, 'dim', ctx.color)
        : paint(SPARK[1 + Math.round((v / peak) * 6)]!, 'green', ctx.color),
    )
    .join('');
  lines.push(`  ${spark}`);
  const left = `-${Number.isInteger(minutes) ? minutes : minutes.toFixed(1)}m`;
  if (cells >= left.length + 4)
    lines.push(paint(`  ${left}${padStart('now', cells - left.length)}`, 'dim', ctx.color));
  return lines.slice(0, rows).map((l) => truncate(l, ctx.width));
}

/** Title and one horizontal bar per log2 size bucket, from the smallest to the largest size seen. */
export function sizesSection(ctx: SectionContext, rows: number): string[] {
  const { source, buckets } = ctx.stats.sizeHistogram();
  const sizes = ctx.stats.sizeSummary();
  const detail =
    source === 'samples'
      ? `n=${int(sizes.n)}  min ${humanBytes(sizes.min)}  mean ${humanBytes(sizes.mean)}  max ${humanBytes(sizes.max)}`
      : source === 'summaries'
        ? "from the agents' fastmon_summary"
        : '';
  const lines = [title('SAMPLE SIZES', detail, ctx)];
  let shown = usedRange(buckets);
  if (shown.length === 0) return [...lines, '  no sizes yet'].slice(0, rows);
  while (shown.length > Math.max(1, rows - 1)) shown = mergePairs(shown);
  const labels = shown.map(bucketLabel);
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const total = shown.reduce((a, b) => a + b.count, 0);
  const max = Math.max(...shown.map((b) => b.count));
  const countWidth = Math.max(...shown.map((b) => int(b.count).length)) + 7;
  const barWidth = Math.max(1, ctx.width - labelWidth - countWidth - 5);
  shown.forEach((b, i) => {
    const bar = paint(hbar(b.count / max, barWidth), 'cyan', ctx.color);
    const pct = `${((100 * b.count) / total).toFixed(0)}%`;
    lines.push(
      truncate(
        `  ${padStart(labels[i]!, labelWidth)} ${padEnd(bar, barWidth)} ${padStart(`${int(b.count)} ${padStart(pct, 4)}`, countWidth)}`,
        ctx.width,
      ),
    );
  });
  return lines.slice(0, rows);
}

/** The buckets from the smallest to the largest non-empty one: what the histogram would show given room. */
export function usedRange(buckets: HistogramBucket[]): HistogramBucket[] {
  const first = buckets.findIndex((b) => b.count > 0);
  if (first < 0) return [];
  const last = buckets.length - 1 - [...buckets].reverse().findIndex((b) => b.count > 0);
  return buckets.slice(first, last + 1);
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

function hbar(fraction: number, width: number): string {
  const eighths = Math.round(Math.max(0, Math.min(1, fraction)) * width * 8);
  const full = Math.floor(eighths / 8);
  // A non-empty bucket always shows at least a sliver.
  const rest = full === 0 && eighths % 8 === 0 && fraction > 0 ? '▏' : EIGHTHS[eighths % 8]!;
  return '█'.repeat(full) + rest;
}

function mergePairs(buckets: HistogramBucket[]): HistogramBucket[] {
  const out: HistogramBucket[] = [];
  for (let i = 0; i < buckets.length; i += 2) {
    const a = buckets[i]!;
    const b = buckets[i + 1];
    out.push(b ? { lo: a.lo, hi: b.hi, count: a.count + b.count } : a);
  }
  return out;
}

function bucketLabel(b: HistogramBucket): string {
  if (b.hi === null) return `≥ ${binaryBytes(b.lo)}`;
  if (b.lo === 0) return `< ${binaryBytes(b.hi)}`;
  const [lo, loUnit] = binaryBytes(b.lo).split(' ');
  const [hi, hiUnit] = binaryBytes(b.hi).split(' ');
  return loUnit === hiUnit ? `${lo}-${hi} ${hiUnit}` : `${lo} ${loUnit}-${hi} ${hiUnit}`;
}

const HEALTH_STYLE: Record<AgentView['health'], Style> = { ok: 'green', quiet: 'yellow', error: 'red' };

const agentColumns = (now: number): Column<AgentView>[] => [
  { title: 'agent', width: 24, align: 'left', priority: 0, cell: (a) => safe(a.name, 60) },
  {
    title: 'status',
    width: 9,
    align: 'left',
    priority: 1,
    cell: (a) => safe(a.lastStatus, 20),
    style: (a) => HEALTH_STYLE[a.health],
  },
  { title: 'last seen', width: 10, align: 'right', priority: 2, cell: (a) => ago(a.lastSeen, now) },
  {
    title: 'outbox',
    width: 6,
    align: 'right',
    priority: 4,
    cell: (a) => (a.outboxDepth === null ? '-' : int(a.outboxDepth)),
    style: (a) => (a.outboxDepth !== null && a.outboxDepth > 0 ? 'yellow' : null),
  },
  { title: 'samples', width: 8, align: 'right', priority: 5, cell: (a) => int(a.samples) },
  {
    title: 'errors',
    width: 8,
    align: 'left',
    priority: 3,
    flex: true,
    cell: (a) => errorList(a.errors) || (a.lastStatus === 'error' ? safe(a.lastMessage, 80) : '-'),
    style: (a) => (Object.keys(a.errors).length > 0 || a.health === 'error' ? 'red' : null),
  },
];

export function agentsSection(ctx: SectionContext, rows: number): string[] {
  const agents = ctx.stats.agentViews(ctx.now);
  const lines = [title('AGENTS', `${agents.length} heard from`, ctx)];
  if (agents.length === 0) return [...lines, '  no agent heard from yet'].slice(0, rows);
  const shown = fitRows(agents, rows - 2);
  lines.push(...renderTable(agentColumns(ctx.now), shown, ctx.width, ctx.color));
  if (shown.length < agents.length) {
    lines.push(paint(`  … ${agents.length - shown.length} more agents`, 'dim', ctx.color));
  }
  return lines.slice(0, rows);
}
