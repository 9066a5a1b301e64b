// Column tables that fit any width: the least important columns go first when the terminal is narrow.

import { padEnd, padStart, paint, type Style, truncate } from '../ansi.js';

export interface Column<Row> {
  title: string;
  width: number;
  align: 'left' | 'right';
  /** Lower is kept longer; columns are dropped from the highest priority number down. */
  priority: number;
  cell: (row: Row) => string;
  style?: (row: Row) => Style | null;
  /** Takes whatever width is left (one column at most). */
  flex?: boolean;
}

/** The header line and one line per row, in column order, never wider than `width`. */
export function renderTable<Row>(
  columns: Column<Row>[],
  rows: Row[],
  width: number,
  color: boolean,
): string[] {
  const byPriority = [...columns].sort((a, b) => a.priority - b.priority);
  const kept = new Set<Column<Row>>();
  let used = 0;
  for (const c of byPriority) {
    const need = c.width + (kept.size > 0 ? 2 : 0);
    if (used + need > width && kept.size > 0) continue;
    kept.add(c);
    used += need;
  }
  const shown = columns.filter((c) => kept.has(c));
  const spare = Math.max(0, width - used);
  const widthOf = (c: Column<Row>) => (c.flex ? c.width + spare : c.width);
  const align = (c: Column<Row>, text: string) =>
    c.align === 'right' ? padStart(text, widthOf(c)) : padEnd(text, widthOf(c));
  const header = shown.map((c) => align(c, c.title)).join('  ');
  const lines = [truncate(paint(header.trimEnd(), 'dim', color), width)];
  for (const row of rows) {
    const cells = shown.map((c) => paint(align(c, c.cell(row)), c.style?.(row) ?? null, color));
    lines.push(truncate(cells.join('  ').trimEnd(), width));
  }
  return lines;
}
