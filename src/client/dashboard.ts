// The full-screen live view for shift crews: what is happening now, per run, redrawn in place without flicker.

import { truncate, visibleWidth } from './ansi.js';
import {
  agentsSection,
  header,
  rateSection,
  runsSection,
  type SectionContext,
  sizesSection,
  usedRange,
} from './render/sections.js';
import type { ClientStats } from './stats.js';

export interface RenderOptions {
  width: number;
  height: number;
  color: boolean;
  /** Where messages come from, e.g. `stomp://127.0.0.1:61613 /topic/epictopic`. */
  source: string;
  /** The connection as the caller sees it: connected, reconnecting, error … */
  sourceStatus: string;
  now: Date | number;
}

interface Section {
  render: (ctx: SectionContext, rows: number) => string[];
  /** Lines without which the section is not worth showing. */
  min: number;
  /** Lines it would use if the screen were large enough. */
  want: number;
  /** Lines it is given before the other sections grow (runs first, up to ten of them). */
  first: number;
  rows: number;
}

/**
 * The screen as lines, none wider than `width` visible cells and at most `height` of them. Small terminals
 * lose sections in this order: size histogram, TF-rate sparkline, agents; the header and the run table stay.
 */
export function renderDashboard(stats: ClientStats, options: RenderOptions): string[] {
  const width = Math.max(0, Math.floor(options.width));
  const height = Math.max(0, Math.floor(options.height));
  if (width === 0 || height === 0) return [];
  const now = typeof options.now === 'number' ? options.now : options.now.getTime();
  const ctx: SectionContext = { stats, width, color: options.color, now };
  const top = header(ctx, options.source, options.sourceStatus).slice(0, height);
  let budget = height - top.length;

  const runs = stats.runViews(now).length;
  const agents = stats.agentViews(now).length;
  const sizes = usedRange(stats.sizeHistogram().buckets).length;
  // In order of importance; laid out as runs, agents, rate, sizes.
  const sections: Record<'runs' | 'agents' | 'rate' | 'sizes', Section> = {
    runs: {
      render: runsSection,
      min: 2 + Math.min(3, Math.max(1, runs)),
      want: 2 + Math.max(1, runs),
      first: 12,
      rows: 0,
    },
    agents: {
      render: agentsSection,
      min: agents > 0 ? 3 : 2,
      want: 2 + Math.max(1, agents),
      first: 6,
      rows: 0,
    },
    rate: { render: rateSection, min: 2, want: 3, first: 3, rows: 0 },
    sizes: { render: sizesSection, min: 3, want: 1 + Math.max(1, sizes), first: 10, rows: 0 },
  };
  const byImportance = [sections.runs, sections.agents, sections.rate, sections.sizes];
  const included: Section[] = [];
  for (const s of byImportance) {
    if (s.min > budget) continue;
    s.rows = s.min;
    budget -= s.min;
    included.push(s);
  }
  // Blank lines between sections only when every section can have one.
  const separators = included.length > 0 && budget >= included.length ? included.length : 0;
  budget -= separators;
  for (const pass of ['first', 'want'] as const) {
    for (const s of included) {
      const more = Math.min(budget, Math.max(0, Math.min(s[pass], s.want) - s.rows));
      s.rows += more;
      budget -= more;
    }
  }

  const lines = [...top];
  for (const s of [sections.runs, sections.agents, sections.rate, sections.sizes]) {
    if (!included.includes(s)) continue;
    if (separators > 0) lines.push('');
    lines.push(...s.render(ctx, s.rows));
  }
  return lines.slice(0, height).map((l) => truncate(l, width));
}

/** What Dashboard needs of process.stdout, so that tests can pass a fake. */
export interface DashboardOutput {
  write(chunk: string): unknown;
  columns?: number;
  rows?: number;
  on(event: 'resize', listener: () => void): unknown;
  off?(event: 'resize', listener: () => void): unknown;
}

export interface DashboardOptions {
  color: boolean;
  source: () => string;
  status: () => string;
  /** Frame interval; 250 ms (4 frames a second) at most often. */
  refreshMs?: number;
  /** Wall clock for the header and for "last seen"; the stats' own clock by default. */
  now?: () => number;
}

const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

/**
 * Draws renderDashboard on the alternate screen. Each frame moves home, rewrites every line followed by
 * clear-to-end-of-line and clears below the last line: the screen is never blanked between frames, so it
 * does not flicker. A frame is built only when the stats changed, the terminal was resized or the second
 * changed (the clocks), and written only when it differs from the previous one.
 */
export class Dashboard {
  private timer: NodeJS.Timeout | null = null;
  private lastFrame = '';
  private lastVersion = -1;
  private lastSecond = -1;
  private resized = false;
  private readonly refreshMs: number;
  private readonly now: () => number;
  private readonly onResize = (): void => {
    this.resized = true;
  };

  constructor(
    private readonly out: DashboardOutput,
    private readonly stats: ClientStats,
    private readonly options: DashboardOptions,
  ) {
    this.refreshMs = Math.max(250, options.refreshMs ?? 250);
    this.now = options.now ?? stats.now;
  }

  start(): void {
    if (this.timer !== null) return;
    this.out.write(ENTER);
    this.out.on('resize', this.onResize);
    this.draw();
    this.timer = setInterval(() => this.draw(), this.refreshMs);
    this.timer.unref?.();
  }

  /** Draws now if anything changed; start() calls it on every tick. */
  draw(): void {
    const now = this.now();
    const second = Math.floor(now / 1000);
    if (!this.resized && this.stats.version === this.lastVersion && second === this.lastSecond) return;
    const width = this.out.columns || 80;
    const height = this.out.rows || 24;
    const lines = renderDashboard(this.stats, {
      width,
      height,
      color: this.options.color,
      source: this.options.source(),
      sourceStatus: this.options.status(),
      now,
    });
    // After a resize the terminal may have reflowed the old frame anywhere: clear once, not every frame.
    const clear = this.resized ? '\x1b[2J' : '';
    // A line as wide as the screen leaves the cursor in the pending-wrap state, where \x1b[K would erase
    // its last cell; it needs no clearing anyway. No newline after the last row, or the screen scrolls.
    const body = lines
      .map((l, i) => (i > 0 ? '\r\n' : '') + l + (visibleWidth(l) < width ? '\x1b[K' : ''))
      .join('');
    const tail = lines.length < height ? `${lines.length > 0 ? '\r\n' : ''}\x1b[J` : '';
    const frame = `${clear}\x1b[H${body}${tail}`;
    this.lastVersion = this.stats.version;
    this.lastSecond = second;
    if (frame === this.lastFrame && !this.resized) return;
    this.resized = false;
    this.lastFrame = frame;
    this.out.write(frame);
  }

  stop(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    this.out.off?.('resize', this.onResize);
    this.out.write(LEAVE);
  }
}
