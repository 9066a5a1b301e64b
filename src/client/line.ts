// One aligned line per message for the scrolling (non-dashboard) client view, as the original client printed.

import { padEnd, padStart, paint, type Style } from './ansi.js';
import { type ClientMessage, count, num, obj, runOf, safe, str } from './fields.js';
import { hms, humanBytes, int, rate } from './format.js';

export type { ClientMessage } from './fields.js';

export interface LineWidths {
  /** `swf.101993.000001_tf_001.tf` is 27 characters. */
  tf: number;
  size: number;
  /** `swf.101993.000001.stf` is 21 characters. */
  stf: number;
  run: number;
  tfs: number;
}

export const DEFAULT_WIDTHS: LineWidths = { tf: 27, size: 8, stf: 21, run: 6, tfs: 17 };

export interface LineOptions {
  color: boolean;
  /** Receive time printed at the start of the line; the message's own timestamp is the agent's local time. */
  now?: Date;
  widths?: Partial<LineWidths>;
}

/** The original client's colours (docs/testbed-interface.md, "The original client"). */
export const STATUS_STYLE: Record<string, Style> = {
  registered: 'green',
  processing: 'yellow',
  processed: 'blue',
  failed: 'red',
  done: 'magenta',
};

export function statusStyle(status: string | null): Style | null {
  return status === null ? null : (STATUS_STYLE[status.toLowerCase()] ?? null);
}

/** `HH:MM:SS  <tf>  <size>  STF <stf>  run <run>  TFs <first>-<last> (<count>)  <status>`; '-' for what is missing. */
export function formatLine(m: ClientMessage, options: LineOptions): string {
  const w = { ...DEFAULT_WIDTHS, ...options.widths };
  const { color } = options;
  const status = str(m, 'status');
  const style = statusStyle(status);
  const first = num(m, 'tf_first');
  const last = num(m, 'tf_last');
  const tfCount = num(m, 'tf_count');
  const tfs =
    first === null && last === null && tfCount === null
      ? '-'
      : `${first ?? '-'}-${last ?? '-'} (${tfCount ?? '-'})`;
  return [
    paint(hms(options.now ?? new Date()), 'dim', color),
    paint(padEnd(safe(str(m, 'tf_filename')), w.tf), style, color),
    padStart(humanBytes(count(m, 'file_size_bytes')), w.size),
    `STF ${padEnd(safe(str(m, 'stf_filename')), w.stf)}`,
    `run ${padEnd(safe(runOf(m)), w.run)}`,
    `TFs ${padEnd(safe(tfs), w.tfs)}`,
    paint(safe(status, 20), style, color),
  ].join('  ');
}

export interface OtherOptions {
  color?: boolean;
  now?: Date;
}

/** One line for fastmon_status, fastmon_summary and anything else that arrives on the topic. */
export function formatOther(m: ClientMessage, options: OtherOptions = {}): string {
  const color = options.color ?? false;
  const time = paint(hms(options.now ?? new Date()), 'dim', color);
  const kind = str(m, 'msg_type');
  const agent = safe(str(m, 'processed_by'), 60);
  const run = safe(runOf(m));
  if (kind === 'fastmon_status') {
    const status = str(m, 'status');
    const style: Style | null = status === 'error' ? 'red' : status === 'completed' ? 'magenta' : 'cyan';
    const counts = [
      countPart(m, 'stfs_received', 'STFs'),
      countPart(m, 'stfs_sampled', 'sampled'),
      countPart(m, 'tf_files_registered', 'TF samples'),
      countPart(m, 'tf_files_failed', 'failed'),
    ].filter((p) => p !== null);
    const bytes = count(m, 'bytes_sampled');
    if (bytes !== null) counts.push(humanBytes(bytes));
    return [
      time,
      paint('status ', 'bold', color),
      agent,
      `run ${run}`,
      paint(safe(status, 20), style, color),
      safe(str(m, 'message'), 120),
      counts.length > 0 ? `(${counts.join(', ')})` : '',
    ]
      .filter((p) => p !== '')
      .join('  ');
  }
  if (kind === 'fastmon_summary') {
    const rates = obj(m, 'rates') ?? {};
    const parts = [
      `STFs ${n(m, 'stfs_seen')} seen/${n(m, 'stfs_sampled')} sampled/${n(m, 'stfs_skipped')} skipped/${n(m, 'stfs_failed')} failed`,
      `TF samples ${n(m, 'tf_files_registered')} (${n(m, 'tf_files_failed')} failed)`,
      humanBytes(count(m, 'bytes_sampled')),
      `${rate(num(rates, 'tf_files_per_s'))} TF/s`,
      `outbox ${n(m, 'outbox_depth')}`,
    ];
    const errors = errorList(obj(m, 'errors'));
    return [
      time,
      paint('summary', 'bold', color),
      agent,
      `run ${run}`,
      parts.join(', '),
      errors === '' ? '' : paint(`errors ${errors}`, 'red', color),
      m.final === true ? paint('final', 'magenta', color) : '',
    ]
      .filter((p) => p !== '')
      .join('  ');
  }
  return [time, padEnd(safe(kind, 40), 7), run === '-' ? '' : `run ${run}`, agent === '-' ? '' : agent]
    .filter((p) => p !== '')
    .join('  ');
}

/** `CODE×3, OTHER×1`, largest first, at most `max` codes. */
export function errorList(errors: ClientMessage | null, max = 4): string {
  if (errors === null) return '';
  const entries = Object.entries(errors)
    .filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]) && e[1] > 0)
    .sort((a, b) => b[1] - a[1]);
  const shown = entries.slice(0, max).map(([code, k]) => `${safe(code, 40)}×${int(k)}`);
  if (entries.length > max) shown.push(`+${entries.length - max} more`);
  return shown.join(', ');
}

function n(m: ClientMessage, key: string): string {
  const v = count(m, key);
  return v === null ? '-' : int(v);
}

function countPart(m: ClientMessage, key: string, label: string): string | null {
  const v = count(m, key);
  return v === null ? null : `${int(v)} ${label}`;
}

export interface ColorStream {
  isTTY?: boolean;
}

/** Colour only on a terminal, never with NO_COLOR set to anything (no-color.org), never on TERM=dumb. */
export function useColor(stream: ColorStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && env.NO_COLOR === undefined && env.TERM !== 'dumb';
}
