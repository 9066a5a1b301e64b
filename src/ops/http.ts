// /healthz and Prometheus /metrics on a local port.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface Health {
  ok: boolean;
  [key: string]: unknown;
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

/** Ports tried after the default one when it is taken (another agent on the host), before any free port. */
export const PORT_SEARCH = 16;

/**
 * Opens the ops endpoint on `port`; when that port is taken and it was not chosen explicitly, on
 * the next free one of the following PORT_SEARCH, else on any free port. Several agents on one host
 * (scaling out) then work out of the box: 9464, 9465, … in start order. An explicit port is
 * honoured exactly or not at all (EADDRINUSE is thrown).
 */
export async function startOpsServerNear(
  host: string,
  port: number,
  explicit: boolean,
  registry: Registry,
  health: () => Health,
): Promise<OpsServer> {
  const candidates =
    explicit || port === 0 ? [port] : [...Array.from({ length: PORT_SEARCH }, (_, i) => port + i), 0];
  let lastError: unknown;
  for (const candidate of candidates.filter((p) => p <= 65535)) {
    try {
      return await startOpsServer(host, candidate, registry, health);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
      lastError = err;
    }
  }
  throw lastError;
}

export async function startOpsServer(
  host: string,
  port: number,
  registry: Registry,
  health: () => Health,
): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/healthz') {
      const h = health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h));
      return;
    }
    if (url === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
