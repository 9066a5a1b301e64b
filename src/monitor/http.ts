// JSON over HTTP to swf-monitor: keep-alive pool, token auth, timeouts, bounded retries with backoff.

import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import type { Config } from '../config/load.js';
import { FastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { redactText } from '../log/redact.js';

export type MonitorHttpOptions = Omit<
  Config['monitor'],
  'heartbeatIntervalS' | 'pipelining' | 'logsUrl' | 'logLevel' | 'logQueue'
> & {
  /** Requests in flight per connection for idempotent requests (default 1). */
  pipelining?: number;
  logger: Logger;
  /** Called after every attempt, for metrics. */
  observe?: (method: string, endpoint: string, outcome: string, seconds: number) => void;
};

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string>;
  /** Retry timeouts, connection errors and 5xx (default true). */
  retry?: boolean;
  /**
   * Safe to send again and to pipeline behind other requests (monitor.pipelining). undici
   * pipelines only requests marked idempotent and non-blocking; a POST is neither by default.
   */
  idempotent?: boolean;
  signal?: AbortSignal;
}

/** The body is parsed JSON, unchecked: its shape is checked where it is read (rows.ts). */
export interface MonitorResponse {
  status: number;
  body: unknown;
}

/**
 * Every call goes to `<SWF_MONITOR_URL>/api<endpoint>`, like BaseAgent's _api_request.
 * Differences that matter: 404 is not retried (BaseAgent retries it for ~137 s), and the
 * retries run on the event loop without holding up message reception.
 */
export class MonitorHttp {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly auth: string;

  constructor(private readonly options: MonitorHttpOptions) {
    const base = new URL(options.url);
    this.basePath = base.pathname.replace(/\/+$/, '');
    this.pool = new Pool(base.origin, {
      connections: options.connections,
      pipelining: options.pipelining ?? 1,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: { timeout: Math.min(options.timeoutMs, 5000) },
    });
    this.auth = `Token ${options.token}`;
  }

  /** Throws MONITOR_REJECTED (4xx), MONITOR_REDIRECT (3xx), MONITOR_UNAVAILABLE (after retries). */
  async request(method: string, endpoint: string, opts: RequestOptions = {}): Promise<MonitorResponse> {
    const retries = opts.retry === false ? 0 : this.options.retries;
    let lastReason = '';
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.once(method, endpoint, opts);
      if (outcome.kind === 'done') return outcome.response;
      lastReason = outcome.reason;
      if (attempt >= retries || opts.signal?.aborted) break;
      const delay = Math.round(this.options.retryDelayMs * 2 ** attempt * (0.75 + Math.random() * 0.5));
      this.options.logger.warn(
        { endpoint, method, attempt: attempt + 1, retryInMs: delay, reason: lastReason },
        'swf-monitor request failed; retrying',
      );
      try {
        await sleep(delay, undefined, { signal: opts.signal });
      } catch {
        break; // aborted: shutting down
      }
    }
    throw new FastmonError(
      'MONITOR_UNAVAILABLE',
      `swf-monitor ${method} ${endpoint} failed after ${retries + 1} attempt(s): ${lastReason}`,
      { method, endpoint, attempts: retries + 1 },
    );
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private async once(
    method: string,
    endpoint: string,
    opts: RequestOptions,
  ): Promise<{ kind: 'done'; response: MonitorResponse } | { kind: 'retry'; reason: string }> {
    const started = performance.now();
    const label = endpointLabel(endpoint);
    const search = opts.query ? `?${new URLSearchParams(opts.query).toString()}` : '';
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.token) headers.authorization = this.auth;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let status: number;
    let text: string;
    try {
      const res = await this.pool.request({
        method: method as 'GET',
        path: `${this.basePath}/api${endpoint}${search}`,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
        ...(opts.idempotent ? { idempotent: true, blocking: false } : {}),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const code = (err as { code?: string }).code;
      this.options.observe?.(method, label, 'error', (performance.now() - started) / 1000);
      return { kind: 'retry', reason: redactText(`${code ?? 'error'}: ${messageOf(err)}`) };
    }
    this.options.observe?.(method, label, String(status), (performance.now() - started) / 1000);
    if (status >= 500) return { kind: 'retry', reason: `HTTP ${status}: ${preview(text)}` };
    if (status >= 300 && status < 400) {
      throw new FastmonError(
        'MONITOR_REDIRECT',
        `swf-monitor answered ${method} ${endpoint} with HTTP ${status}; redirects are not followed. ` +
          'Check SWF_MONITOR_URL (sub-path, http vs https) and that the proxy forwards the Authorization header.',
        { method, endpoint, status },
      );
    }
    let body: unknown = null;
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        if (status < 300) {
          throw new FastmonError(
            'MONITOR_BAD_RESPONSE',
            `swf-monitor ${method} ${endpoint}: response is not JSON: ${preview(text)}`,
            {
              method,
              endpoint,
              status,
            },
          );
        }
        body = text;
      }
    }
    if (status >= 400) {
      throw new FastmonError(
        'MONITOR_REJECTED',
        `swf-monitor rejected ${method} ${endpoint} with HTTP ${status}: ${preview(typeof body === 'string' ? body : JSON.stringify(body))}`,
        { method, endpoint, status, response: body },
      );
    }
    return { kind: 'done', response: { status, body } };
  }
}

/** `/fastmon-files/<uuid>/` → `/fastmon-files/{id}/`, so metric labels stay few. */
export function endpointLabel(endpoint: string): string {
  return endpoint.replace(/\/[0-9a-f-]{8,}\//gi, '/{id}/').replace(/\/\d+\//g, '/{id}/');
}

function preview(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return redactText(flat.length > 500 ? `${flat.slice(0, 500)}…` : flat);
}
