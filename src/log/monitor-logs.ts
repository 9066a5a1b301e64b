// Ships the agent's log records to swf-monitor's AppLog table (POST /api/logs/), batched, bounded, off the hot path.

import { threadId } from 'node:worker_threads';
import { Pool } from 'undici';
import type { Config } from '../config/load.js';
import { messageOf } from '../errors.js';
import { redactText, redactValue } from './redact.js';

/**
 * BaseAgent's RestLogHandler posts every record as `app_name` 'base_agent' with the agent's name as
 * `instance_name` (swf-common-lib's setup_rest_logging): the operators' pages group by these two,
 * so fastmon's records sit beside the other agents'.
 */
export const APP_NAME = 'base_agent';

/**
 * pino's levels (our lines carry the label, src/log/logger.ts) → Python logging's, which AppLog.level
 * stores (choices 0/10/20/30/40/50).
 */
const PYTHON_LEVEL: Record<string, [number, string]> = {
  trace: [10, 'DEBUG'],
  debug: [10, 'DEBUG'],
  info: [20, 'INFO'],
  warn: [30, 'WARNING'],
  error: [40, 'ERROR'],
  fatal: [50, 'CRITICAL'],
};

/** pino level values of the `monitor.log_level` choices. */
export const SHIP_LEVELS: Record<string, number> = { debug: 20, info: 30, warn: 40, error: 50 };

export type ShipResult = 'shipped' | 'refused' | 'failed' | 'dropped';

export interface ShipperOptions {
  /** Base URL; records go to `<url>/api/logs/`. */
  url: string;
  /** Records held at most; past it new records are dropped (and counted). */
  maxQueue: number;
  /** A flush every this many ms (default 1000). */
  flushMs?: number;
  /** Per-request timeout (default 5000 ms). */
  timeoutMs?: number;
}

/**
 * A pino destination: `write()` only queues the serialized line (already redacted by the logger),
 * so a log call costs one array push. A timer parses and posts the queue one record per request
 * (AppLog's view takes one object per POST, as BaseAgent sends them) over one keep-alive
 * connection without a token (`/api/logs/` is AllowAny). swf-monitor down or refusing: the
 * records are dropped and counted, the agent goes on. close() flushes for a bounded time.
 */
export class MonitorLogShipper {
  private readonly queue: string[] = [];
  private readonly pool: Pool;
  private readonly path: string;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private instanceName: string | null = null;
  private counter: ((result: ShipResult, n: number) => void) | null = null;
  private readonly pending: Record<ShipResult, number> = { shipped: 0, refused: 0, failed: 0, dropped: 0 };
  private readonly warned = new Set<string>();
  private readonly abort = new AbortController();
  private closed = false;
  /** Set while the shipper logs its own trouble: that line stays local. */
  private muted = false;
  private reporter: ((message: string) => void) | null = null;
  private readonly extra: Record<string, unknown>;

  constructor(private readonly options: ShipperOptions) {
    const base = new URL(options.url);
    this.path = `${base.pathname.replace(/\/+$/, '')}/api/logs/`;
    const timeout = options.timeoutMs ?? 5000;
    this.pool = new Pool(base.origin, {
      connections: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: { timeout: Math.min(timeout, 5000) },
    });
    this.extra = { username: process.env.USER || process.env.LOGNAME || null };
  }

  /** pino calls this synchronously for every record at or above the shipping level. */
  write(line: string): void {
    if (this.muted) return;
    if (this.closed || this.queue.length >= this.options.maxQueue) {
      this.count('dropped', 1);
      return;
    }
    this.queue.push(line);
  }

  /** Where the shipper's own trouble is logged (once per kind); those lines are not shipped. */
  reportTo(report: (message: string) => void): void {
    this.reporter = report;
  }

  /** Records wait for the agent's name (from swf-monitor); this names them and starts the flushes. */
  bind(instanceName: string, count: (result: ShipResult, n: number) => void): void {
    this.instanceName = instanceName;
    this.counter = count;
    for (const [result, n] of Object.entries(this.pending) as [ShipResult, number][])
      if (n > 0) count(result, n);
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.kick(), this.options.flushMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Flushes what is queued for at most `timeoutMs`; what is left is dropped and counted. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.abort.abort();
        resolve();
      }, timeoutMs);
    });
    if (this.instanceName) this.kick();
    await Promise.race([this.flushing, deadline]);
    clearTimeout(timer);
    if (this.queue.length > 0) this.count('dropped', this.queue.splice(0).length);
    this.abort.abort();
    await this.pool.destroy().catch(() => {});
  }

  private kick(): void {
    this.flushing = this.flushing.then(() => this.flush());
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0 && !this.abort.signal.aborted) {
      const line = this.queue.shift() as string;
      const record = this.toAppLog(line);
      if (!record) continue;
      const outcome = await this.post(record);
      this.count(outcome, 1);
      // An unreachable monitor is not asked again until the next tick.
      if (outcome === 'failed') return;
    }
  }

  private async post(record: Record<string, unknown>): Promise<ShipResult> {
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(record),
        signal: this.abort.signal,
      });
      const text = await res.body.text();
      if (res.statusCode >= 200 && res.statusCode < 300) return 'shipped';
      const kind = res.statusCode >= 500 ? 'failed' : 'refused';
      this.warnOnce(
        `${kind}:${res.statusCode}`,
        `swf-monitor ${kind === 'refused' ? 'refused' : 'could not take'} a log record (HTTP ${res.statusCode}): ${redactText(text.slice(0, 300))}`,
      );
      return kind;
    } catch (err) {
      this.warnOnce(
        'failed:network',
        `swf-monitor unreachable for log records: ${redactText(messageOf(err))}`,
      );
      return 'failed';
    }
  }

  private warnOnce(kind: string, message: string): void {
    if (this.warned.has(kind)) return;
    this.warned.add(kind);
    this.muted = true;
    try {
      this.reporter?.(`${message} (further ones are only counted in fastmon_monitor_log_records_total)`);
    } finally {
      this.muted = false;
    }
  }

  private count(result: ShipResult, n: number): void {
    if (this.counter) this.counter(result, n);
    else this.pending[result] += n;
  }

  /** One pino line as an AppLog row (contract: every field but level and extra_data is required). */
  private toAppLog(line: string): Record<string, unknown> | null {
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return null;
    }
    const { level, time, msg, pid, hostname: _host, name, ...rest } = r;
    const [pyLevel, levelname] = PYTHON_LEVEL[String(level)] ?? [20, 'INFO'];
    const extra = redactValue({
      ...this.extra,
      run_id: rest.run ?? null,
      execution_id: rest.execution ?? rest.executionId ?? null,
      ...rest,
    }) as Record<string, unknown>;
    // Measured as text (what swf-monitor stores); a record within the limit is sent as it is,
    // not parsed back from its text (one STF's line each: BENCHMARKS.md, "The agent's own cost").
    const extraText = JSON.stringify(extra);
    const extraData = extraText.length > 8192 ? { truncated: extraText.slice(0, 8000) } : extra;
    const message = redactText(String(msg ?? ''));
    return {
      app_name: APP_NAME,
      instance_name: (this.instanceName as string).slice(0, 100),
      timestamp: typeof time === 'string' ? time : new Date(Number(time) || Date.now()).toISOString(),
      level: pyLevel,
      levelname,
      message: message.length > 16384 ? `${message.slice(0, 16384)}…` : message || '(no message)',
      module: String(name ?? 'swf-fastmon').slice(0, 255),
      funcname: typeof rest.code === 'string' ? rest.code : '-',
      lineno: 0,
      process: Number(pid) || process.pid,
      thread: threadId,
      extra_data: extraData,
    };
  }
}

/** The shipper the configuration asks for, or null (no URL, or monitor.log_level off). */
export function monitorLogShipper(config: Config): MonitorLogShipper | null {
  const m = config.monitor;
  if (!m.logsUrl || !(m.logLevel in SHIP_LEVELS)) return null;
  return new MonitorLogShipper({ url: m.logsUrl, maxQueue: m.logQueue });
}
