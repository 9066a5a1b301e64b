// A one-line progress display on a TTY stderr, redrawn in place, that log lines do not tear.

import { Writable } from 'node:stream';
import { prettyStream } from '../log/logger.js';

export interface ProgressStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Redrawn at most every 100 ms (the text is cheap to build, the terminal is not). Log lines go
 * through loggerStream(), which lifts the line, writes the log line and draws the line again
 * below it. Off a TTY it draws nothing: pipes and log files get the summary only.
 */
export class ProgressLine {
  private line = '';
  private lastDraw = 0;
  readonly tty: boolean;

  constructor(private readonly err: ProgressStream) {
    this.tty = err.isTTY === true;
  }

  /** Pretty log lines that respect the progress line on a TTY; undefined (the logger's default) otherwise. */
  loggerStream(): Writable | undefined {
    if (!this.tty) return undefined;
    const target = new Writable({
      write: (chunk, _encoding, callback) => {
        this.err.write(this.line ? `\r\x1b[K${chunk}${this.line}` : String(chunk));
        callback();
      },
    });
    return prettyStream(target);
  }

  /** `fraction` draws a bar when the total is known (gen); scans show counters only. */
  update(text: string, fraction: number | null = null, force = false): void {
    if (!this.tty) return;
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    let bar = '';
    if (fraction !== null) {
      const width = Math.max(10, Math.min(40, (this.err.columns || 80) - text.length - 4));
      const filled = Math.round(width * Math.min(1, Math.max(0, fraction)));
      bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    }
    this.line = `${bar} ${text}`.slice(0, Math.max(20, (this.err.columns || 80) - 1));
    this.err.write(`\r\x1b[K${this.line}`);
  }

  finish(text?: string, fraction: number | null = null): void {
    if (!this.tty) return;
    if (text !== undefined) this.update(text, fraction, true);
    if (this.line !== '') this.err.write('\n');
    this.line = '';
  }
}

export function humanRate(count: number, seconds: number): string {
  return (count / Math.max(seconds, 1e-3)).toFixed(count / Math.max(seconds, 1e-3) < 10 ? 1 : 0);
}
