// The monitor double's HTTP layer as DRF and Django shape it: routes, token authentication, JSON parsing,
// opt-in pagination, the ModelViewSet detail actions, and how a reply is written.

import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { type Body, type Listed, type Mode, notADictionary, type Outcome } from './drf.js';

export interface Reply {
  status: number;
  body?: unknown;
  /** Non-JSON payload (redirects, injected HTML error pages). */
  text?: string;
  headers?: Record<string, string>;
}

export interface Call {
  params: string[];
  query: URLSearchParams;
  body: Body;
  /** Absolute URL of the request, for pagination links. */
  self: URL;
}

export type Handler = (call: Call) => Reply;

export interface Route {
  pattern: RegExp;
  /** 'always': IsAuthenticated (state/*); 'writes': IsAuthenticatedOrReadOnly; 'none': AllowAny (logs). */
  auth: 'always' | 'writes' | 'none';
  methods: Partial<Record<string, Handler>>;
}

/** DRF's default lookup_value_regex, the `{pk}` of a detail route. */
export const PK = '([^/.]+)';

/** A DefaultRouter route: `path` below /api/, with DRF's trailing slash. */
export function route(path: string, auth: Route['auth'], methods: Route['methods']): Route {
  return { pattern: new RegExp(`^/api/${path}/$`), auth, methods };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
export const NOT_FOUND: Reply = { status: 404, body: { detail: 'Not found.' } };

export const json = (status: number, body?: unknown): Reply => ({ status, body });
export const saved = <T>(outcome: Outcome<T>, status: number): Reply =>
  'errors' in outcome ? json(400, outcome.errors) : json(status, outcome.row);

/** Opt-in LimitOffsetPagination (views._OptInLimitPagination): only when ?limit= is a positive integer. */
function paginate(rows: readonly unknown[], call: Call): Reply {
  const limit = positiveInt(call.query.get('limit'));
  if (limit === undefined || limit === 0) return json(200, rows);
  const offset = positiveInt(call.query.get('offset')) ?? 0;
  const link = (newOffset: number | undefined) => {
    const url = new URL(call.self);
    url.searchParams.set('limit', String(limit));
    if (newOffset === undefined) url.searchParams.delete('offset');
    else url.searchParams.set('offset', String(newOffset));
    url.searchParams.sort(); // DRF's replace_query_param sorts the query
    return url.toString();
  };
  return json(200, {
    count: rows.length,
    next: offset + limit >= rows.length ? null : link(offset + limit),
    previous: offset <= 0 ? null : link(offset - limit <= 0 ? undefined : offset - limit),
    results: rows.slice(offset, offset + limit),
  });
}

function positiveInt(text: string | null): number | undefined {
  return text !== null && /^\s*\+?\d+\s*$/.test(text) ? Number.parseInt(text, 10) : undefined;
}

export function listed<T>(outcome: Listed<T>, call: Call): Reply {
  return 'errors' in outcome ? json(400, outcome.errors) : paginate(outcome.rows, call);
}

/** A ModelViewSet detail route: lookup, then retrieve / partial_update / update / destroy. */
export function detail<T>(
  model: string,
  find: (pk: string) => T | undefined,
  save: (body: Body, mode: Mode, row: T) => Outcome<T>,
  destroy?: (row: T) => void,
): Partial<Record<string, Handler>> {
  const missing: Reply = { status: 404, body: { detail: `No ${model} matches the given query.` } };
  const withRow = (action: (row: T, call: Call) => Reply) => (call: Call) => {
    const row = find(call.params[0] ?? '');
    return row === undefined ? missing : action(row, call);
  };
  const methods: Partial<Record<string, Handler>> = {
    GET: withRow((row) => json(200, row)),
    PUT: withRow((row, call) => saved(save(call.body, 'put', row), 200)),
    PATCH: withRow((row, call) => saved(save(call.body, 'patch', row), 200)),
  };
  if (destroy) {
    methods.DELETE = withRow((row) => {
      destroy(row);
      return { status: 204 };
    });
  }
  return methods;
}

export function authenticate(
  header: string | undefined,
  token: string,
  route: Route,
  method: string,
): Reply | undefined {
  const parts = (header ?? '').trim().split(/\s+/);
  const unauthorized = (detail: string): Reply => ({
    status: 401,
    body: { detail },
    headers: { 'WWW-Authenticate': 'Token' },
  });
  const hasTokenScheme = parts[0]?.toLowerCase() === 'token';
  if (hasTokenScheme && parts.length === 1) {
    return unauthorized('Invalid token header. No credentials provided.');
  }
  if (hasTokenScheme && parts.length > 2) {
    return unauthorized('Invalid token header. Token string should not contain spaces.');
  }
  if (hasTokenScheme && parts[1] !== token) return unauthorized('Invalid token.');
  const needsUser = route.auth === 'always' || (route.auth === 'writes' && !SAFE_METHODS.has(method));
  if (needsUser && !hasTokenScheme) return unauthorized('Authentication credentials were not provided.');
  return undefined;
}

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

export function parseBody(raw: string): Parsed | undefined {
  if (raw === '') return undefined;
  try {
    return { ok: true, value: JSON.parse(raw) };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

/** DRF's JSONParser: an empty body is {}, another media type is 415, the payload must be a JSON object. */
export function requestBody(
  headers: IncomingHttpHeaders,
  parsed: Parsed | undefined,
): { body: Body } | { reply: Reply } {
  if (parsed === undefined) return { body: {} };
  const contentType = headers['content-type'] ?? '';
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    return { reply: json(415, { detail: `Unsupported media type "${contentType}" in request.` }) };
  }
  if (!parsed.ok) return { reply: json(400, { detail: `JSON parse error - ${parsed.error}` }) };
  const invalid = notADictionary(parsed.value);
  if (invalid) return { reply: json(400, invalid) };
  return { body: parsed.value as Body };
}

export function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed || res.headersSent) return;
  const headers: Record<string, string> = { ...reply.headers };
  let payload = '';
  if (reply.text !== undefined) {
    payload = reply.text;
    headers['Content-Type'] ??= 'text/html; charset=utf-8';
  } else if (reply.body !== undefined) {
    payload = JSON.stringify(reply.body);
    headers['Content-Type'] = 'application/json';
  }
  headers['Content-Length'] = String(Buffer.byteLength(payload));
  res.writeHead(reply.status, headers);
  res.end(payload);
}

export function decodePathParam(param: string): string {
  try {
    return decodeURIComponent(param);
  } catch {
    return param;
  }
}

export function normalizeBasePath(basePath: string | undefined): string {
  const trimmed = (basePath ?? '').replace(/\/+$/, '');
  return trimmed === '' || trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}
