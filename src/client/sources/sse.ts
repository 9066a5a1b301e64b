// The client's SSE source: swf-monitor's /api/messages/stream/ relay, read with undici, reconnected forever.

import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { FastmonError, messageOf } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { redactText, registerSecret } from '../../log/redact.js';
import {
  type ClientMessage,
  never,
  parseObject,
  type Source,
  type SourceStatus,
  safeDeliver,
} from './source.js';
import { type SseEvent, SseParser } from './sse-parser.js';

export interface SseSourceOptions {
  /** SWF_MONITOR_URL: the base including the deployment sub-path, e.g. https://host/swf-monitor. */
  url: string;
  token: string;
  msgTypes: string[];
  runIds?: string[];
  agents?: string[];
  logger: Logger;
  /** Wait before every new attempt; default 15000 as the testbed's remote_sse_receiver. */
  retryMs?: number;
  /** Reconnect when not a byte arrives for this long; default 90000 (3 × the monitor's 30 s heartbeat). */
  idleTimeoutMs?: number;
}

/** Why an HTTP status happens with swf-monitor, for the one error line an operator reads. */
const HINTS: Record<number, string> = {
  401: 'the token was refused or missing: check SWF_API_TOKEN (a DRF token of this monitor)',
  403: 'the token is valid but may not read the stream: ask the monitor administrators',
  404: 'no SSE relay here: SWF_MONITOR_URL must include the deployment sub-path (e.g. https://host/swf-monitor)',
  503: 'the monitor has no channel layer (REDIS_URL unset or Redis down), so it cannot relay messages',
};

/**
 * The relay is best-effort with no replay (docs/testbed-interface.md, "The SSE relay"): whatever is published while we reconnect is
 * lost, so the loop never gives up, and a 401 is retried too (the token may be fixed server-side).
 * Idle detection is undici's bodyTimeout: any byte resets it, heartbeats included.
 */
export function sseSource(o: SseSourceOptions): Source {
  const retryMs = positive('retryMs', o.retryMs ?? 15_000);
  const idleTimeoutMs = positive('idleTimeoutMs', o.idleTimeoutMs ?? 90_000);
  const endpoint = streamUrl(o);
  const shown = redactText(`${endpoint.origin}${endpoint.pathname}`);
  const filters = describeFilters(o);
  registerSecret(o.token);
  const logger = o.logger.child({ source: 'sse' });
  const controller = new AbortController();
  const dispatcher = new Agent({ connect: { timeout: Math.min(idleTimeoutMs, 10_000) } });
  let state: SourceStatus = 'disconnected';
  let closed = false;
  let everConnected = false;
  let loop: Promise<void> | null = null;
  let releaseStart: (() => void) | null = null;

  const onEvent = (ev: SseEvent, onMessage: (message: ClientMessage) => void): void => {
    if (ev.event === 'connected') {
      state = 'connected';
      everConnected = true;
      const clientId = parseObject(ev.data)?.client_id;
      logger.info({ url: shown, clientId }, 'connected to the swf-monitor SSE relay');
      releaseStart?.();
      return;
    }
    if (ev.event === 'heartbeat') return;
    const message = parseObject(ev.data);
    if (message === null) {
      logger.debug(
        { event: ev.event, preview: ev.data.slice(0, 120) },
        'skipping an SSE event that is not JSON',
      );
      return;
    }
    // The relay names the event after msg_type; a body without one still says what it is.
    if (typeof message.msg_type !== 'string') message.msg_type = ev.event;
    safeDeliver(onMessage, message, logger);
  };

  const stream = async (onMessage: (message: ClientMessage) => void): Promise<void> => {
    state = 'connecting';
    const res = await request(endpoint, {
      method: 'GET',
      headers: {
        authorization: `Token ${o.token}`,
        accept: 'text/event-stream',
        'cache-control': 'no-cache',
      },
      dispatcher,
      signal: controller.signal,
      headersTimeout: idleTimeoutMs,
      bodyTimeout: idleTimeoutMs,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      throw rejection(res.statusCode, text, shown);
    }
    const type = String(res.headers['content-type'] ?? '');
    if (!type.startsWith('text/event-stream')) {
      res.body.destroy();
      throw new FastmonError(
        'SSE_UNAVAILABLE',
        `swf-monitor answered ${shown} with ${type || 'no content type'}, not an event stream ` +
          '(a login page? check SWF_MONITOR_URL and that the proxy forwards the Authorization header)',
        { url: shown, status: 200, contentType: type },
      );
    }
    const parser = new SseParser();
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      for (const ev of parser.push(decoder.decode(chunk as Buffer, { stream: true }))) onEvent(ev, onMessage);
    }
  };

  const run = async (onMessage: (message: ClientMessage) => void): Promise<void> => {
    while (!closed) {
      try {
        await stream(onMessage);
        if (!closed)
          logger.warn({ url: shown, retryInMs: retryMs }, 'the monitor ended the SSE stream; reconnecting');
      } catch (err) {
        if (!closed) report(err, logger, shown, retryMs, idleTimeoutMs);
      }
      if (closed) break;
      state = 'disconnected';
      await sleep(retryMs, undefined, { signal: controller.signal }).catch(() => {});
    }
  };

  return {
    finished: never(),
    async start(onMessage) {
      if (closed || loop) return;
      const connected = new Promise<void>((resolve) => {
        releaseStart = () => {
          releaseStart = null;
          resolve();
        };
      });
      loop = run(onMessage);
      await connected;
    },
    describe() {
      const note = everConnected && state !== 'connected' && !closed ? ' (reconnecting)' : '';
      return `sse ${shown}${filters}${note}`;
    },
    status() {
      return state;
    },
    async close() {
      if (closed) return;
      closed = true;
      controller.abort();
      releaseStart?.();
      await loop;
      state = 'disconnected';
      await dispatcher.destroy();
    },
  };
}

function streamUrl(o: SseSourceOptions): URL {
  let base: URL;
  try {
    base = new URL(o.url);
  } catch {
    throw new FastmonError('CONFIG_INVALID', `SSE url is not a URL: ${redactText(o.url)}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new FastmonError('CONFIG_INVALID', `SSE url must be http(s): ${redactText(o.url)}`);
  }
  const url = new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/api/messages/stream/`);
  const lists: [string, string[] | undefined][] = [
    ['msg_types', o.msgTypes],
    ['run_ids', o.runIds],
    ['agents', o.agents],
  ];
  for (const [key, values] of lists) {
    if (values && values.length > 0) url.searchParams.set(key, values.join(','));
  }
  return url;
}

function describeFilters(o: SseSourceOptions): string {
  const parts: string[] = [];
  if (o.msgTypes.length > 0) parts.push(`msg_types=${o.msgTypes.join(',')}`);
  if (o.runIds && o.runIds.length > 0) parts.push(`run_ids=${o.runIds.join(',')}`);
  if (o.agents && o.agents.length > 0) parts.push(`agents=${o.agents.join(',')}`);
  return parts.length > 0 ? ` ${parts.join(' ')}` : '';
}

function rejection(status: number, text: string, url: string): FastmonError {
  const hint =
    HINTS[status] ??
    (status >= 300 && status < 400
      ? 'redirects are not followed: check http vs https and the sub-path of SWF_MONITOR_URL'
      : 'unexpected answer');
  const flat = text.replace(/\s+/g, ' ').trim();
  const response = redactText(flat.length > 200 ? `${flat.slice(0, 200)}…` : flat);
  return new FastmonError(
    'SSE_UNAVAILABLE',
    `swf-monitor answered the SSE stream with HTTP ${status}: ${hint}`,
    {
      url,
      status,
      response,
    },
  );
}

function report(err: unknown, logger: Logger, url: string, retryMs: number, idleTimeoutMs: number): void {
  if (err instanceof FastmonError) {
    logger.error({ err, retryInMs: retryMs }, err.message);
    return;
  }
  const code = (err as { code?: string }).code;
  const reason =
    code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT'
      ? `no byte from the monitor for ${idleTimeoutMs} ms, not even a heartbeat`
      : redactText(`${code ?? 'error'}: ${messageOf(err)}`);
  logger.warn(
    { code: 'SSE_UNAVAILABLE', url, reason, retryInMs: retryMs },
    `SSE stream lost (${reason}); reconnecting`,
  );
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new FastmonError(
      'CONFIG_INVALID',
      `${name} must be a positive number of milliseconds, got ${value}`,
    );
  }
  return value;
}
