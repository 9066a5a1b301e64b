// swf-monitor's SSE relay (/api/messages/stream/) on 127.0.0.1, speaking its wire format, with faults.
//
// Facts from docs/testbed-interface.md, "The SSE relay". No vitest import, so bench/ can use it too.

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SseServerOptions {
  /** Deployment sub-path, as in production (`https://host/swf-monitor`). Default '/swf-monitor'. */
  basePath?: string;
  /** Default: a random 40-hex DRF-style token. */
  token?: string;
}

export interface SseRequest {
  status: number;
  /** The raw query string, without '?'. */
  query: string;
}

interface StreamClient {
  res: ServerResponse;
  msgTypes: string[] | null;
  runIds: string[] | null;
  agents: string[] | null;
}

export interface SseServer {
  /** The SWF_MONITOR_URL to give a client (origin + base path). */
  readonly url: string;
  readonly token: string;
  /** Every request to the stream endpoint, answered or refused, in order. */
  readonly requests: SseRequest[];
  /** Streams opened so far (200 answers). */
  readonly connections: number;
  /** Streams open now. */
  readonly open: number;
  /** Sends a message to every open stream whose filters it passes, as the relay does. */
  push(message: Record<string, unknown>): void;
  /** An `event: heartbeat` to every open stream. */
  heartbeat(): void;
  /** Writes text as it is to every open stream (garbage, comments, split events). */
  raw(text: string): void;
  /** Cuts every open stream, as a monitor restart would. */
  dropAll(): void;
  /** While on, every request gets 503, as a monitor without a channel layer answers. */
  unavailable(on: boolean): void;
  close(): Promise<void>;
}

/** `?msg_types=a,b` → ['a','b']; absent or empty means no filter. */
function list(params: URLSearchParams, key: string): string[] | null {
  const values = (params.get(key) ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
  return values.length > 0 ? values : null;
}

/**
 * The relay's filters (docs/testbed-interface.md, "The SSE relay"): `agents` matches `processed_by` (not `sender`), and `run_ids` are
 * compared as strings, so a message whose run_id is an integer never matches.
 */
function passes(client: StreamClient, message: Record<string, unknown>): boolean {
  if (client.msgTypes && !client.msgTypes.includes(message.msg_type as string)) return false;
  if (client.runIds && !client.runIds.includes(message.run_id as string)) return false;
  if (client.agents && !client.agents.includes(message.processed_by as string)) return false;
  return true;
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export async function startSseServer(options: SseServerOptions = {}): Promise<SseServer> {
  const basePath = (options.basePath ?? '/swf-monitor').replace(/\/+$/, '');
  const token = options.token ?? randomBytes(20).toString('hex');
  const route = `${basePath}/api/messages/stream/`;
  const clients = new Set<StreamClient>();
  const requests: SseRequest[] = [];
  let connections = 0;
  let down = false;

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    const target = new URL(req.url ?? '/', 'http://localhost');
    if (target.pathname !== route) return json(res, 404, { detail: 'Not found.' });
    const query = target.search.replace(/^\?/, '');
    const refuse = (status: number, body: unknown): void => {
      requests.push({ status, query });
      json(res, status, body);
    };
    if (req.method !== 'GET') return refuse(405, { detail: `Method "${req.method}" not allowed.` });
    if (req.headers.authorization !== `Token ${token}`)
      return refuse(401, { error: 'Authentication required' });
    if (down) return refuse(503, { error: 'Channel layer not configured' });
    requests.push({ status: 200, query });
    connections++;
    const client: StreamClient = {
      res,
      msgTypes: list(target.searchParams, 'msg_types'),
      runIds: list(target.searchParams, 'run_ids'),
      agents: list(target.searchParams, 'agents'),
    };
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no',
      'Access-Control-Allow-Origin': '*',
    });
    res.write(frame('connected', { client_id: randomUUID(), status: 'connected' }));
    clients.add(client);
    res.on('close', () => clients.delete(client));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${basePath}`,
    token,
    requests,
    get connections() {
      return connections;
    },
    get open() {
      return clients.size;
    },
    push(message) {
      for (const c of clients) if (passes(c, message)) c.res.write(frame(String(message.msg_type), message));
    },
    heartbeat() {
      for (const c of clients) c.res.write(frame('heartbeat', { timestamp: Date.now() / 1000 }));
    },
    raw(text) {
      for (const c of clients) c.res.write(text);
    },
    dropAll() {
      for (const c of clients) c.res.destroy();
      clients.clear();
    },
    unavailable(on) {
      down = on;
    },
    async close() {
      for (const c of clients) c.res.destroy();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
