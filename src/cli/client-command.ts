// `swf-fastmon client`: TF notifications live, per-run statistics, a dashboard, a summary on Ctrl+C.

import { Dashboard } from '../client/dashboard.js';
import { formatLine, formatOther, useColor } from '../client/line.js';
import { listenForQuit } from '../client/quit-keys.js';
import {
  type ClientMessage,
  catalogSource,
  type Source,
  sseSource,
  stompSource,
} from '../client/sources/index.js';
import { ClientStats } from '../client/stats.js';
import { formatSummary, summaryObject } from '../client/summary.js';
import { createLogger } from '../log/logger.js';
import { registerSecret } from '../log/redact.js';
import { type CommandSpec, commandHelp, parseCommandLine, usageError } from './options.js';
import { onStopSignals, unlessStopped } from './signals.js';

const DEFAULT_TYPES = ['tf_file_registered', 'fastmon_summary', 'fastmon_status'];

/**
 * The original client's options (Typer: --host, --port/-p, --user/-u, --queue/-q) and the new ones.
 * Its `-h` for --host is gone: -h is help in every command.
 */
export const CLIENT: CommandSpec = {
  name: 'client',
  usage: 'swf-fastmon client [options]',
  about: `Shows TF sample notifications live: from ActiveMQ (default /topic/epictopic), from swf-monitor's SSE
relay (--sse), or from a local catalog (--catalog FILE). Ctrl+C or SIGTERM prints a summary and exits 0
(a second one exits 1 at once); in the dashboard, q does the same. Unlike the original client it needs
no swf-monitor token and registers nothing.`,
  options: [
    { name: 'host', type: 'string', doc: 'broker host (ACTIVEMQ_HOST, default localhost)' },
    { name: 'port', short: 'p', type: 'string', doc: 'STOMP port (ACTIVEMQ_PORT, default 61612)' },
    { name: 'user', short: 'u', type: 'string', doc: 'broker user (ACTIVEMQ_USER, default admin)' },
    { name: 'password', type: 'string', doc: 'broker password (ACTIVEMQ_PASSWORD, default admin)' },
    { name: 'queue', short: 'q', type: 'string', doc: 'destination (default /topic/epictopic)' },
    { name: 'destination', type: 'string', doc: 'the same as --queue' },
    { name: 'ssl', type: 'boolean', doc: 'TLS to the broker (ACTIVEMQ_USE_SSL)' },
    { name: 'ca-certs', type: 'string', value: 'FILE', doc: 'CA bundle for TLS (ACTIVEMQ_SSL_CA_CERTS)' },
    { name: 'sse', type: 'boolean', doc: "read swf-monitor's SSE relay (SWF_MONITOR_URL, SWF_API_TOKEN)" },
    { name: 'catalog', type: 'string', value: 'FILE', doc: 'replay a local catalog file' },
    { name: 'run', type: 'string', doc: 'only this run (comma-separated list allowed)' },
    { name: 'namespace', type: 'string', doc: 'only this testbed namespace' },
    { name: 'msg-types', type: 'string', doc: `message types (default ${DEFAULT_TYPES.join(',')})` },
    {
      name: 'json',
      type: 'boolean',
      doc: 'stdout: one JSON object per line, the summary last (msg_type fastmon_client_summary)',
    },
    { name: 'dashboard', type: 'boolean', doc: 'full-screen view, refreshed in place; q quits' },
  ],
  keys: [],
};

/** A stop takes the source's close (a STOMP DISCONNECT) and a summary: well under the 5 s users wait. */
const CLIENT_STOP_BOUND_MS = 3_000;

function list(value: string | boolean | string[] | undefined): string[] {
  return typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

export async function clientCommand(argv: readonly string[]): Promise<number> {
  const o = parseCommandLine(CLIENT, argv).values;
  if (o.help) {
    process.stdout.write(commandHelp(CLIENT));
    return 0;
  }
  const env = process.env;
  const msgTypes = list(o['msg-types']).length > 0 ? list(o['msg-types']) : DEFAULT_TYPES;
  const runs = new Set(list(o.run));
  const namespace = typeof o.namespace === 'string' ? o.namespace : '';
  const color = useColor(process.stdout);
  const logger = createLogger({ level: env.SWF_LOG_LEVEL?.toLowerCase() === 'debug' ? 'debug' : 'warn' });
  const password = typeof o.password === 'string' ? o.password : (env.ACTIVEMQ_PASSWORD ?? 'admin');
  registerSecret(password);
  registerSecret(env.SWF_API_TOKEN);

  let source: Source;
  if (typeof o.catalog === 'string') {
    source = catalogSource({ file: o.catalog, logger });
  } else if (o.sse) {
    const url = env.SWF_MONITOR_URL;
    if (!url) throw usageError(CLIENT, '--sse needs SWF_MONITOR_URL (and SWF_API_TOKEN)');
    source = sseSource({ url, token: env.SWF_API_TOKEN ?? '', msgTypes, runIds: [...runs], logger });
  } else {
    const rawPort = o.port ?? env.ACTIVEMQ_PORT ?? '61612';
    const port = Number(rawPort);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw usageError(
        CLIENT,
        `--port: expected a port number from 1 to 65535, got ${JSON.stringify(rawPort)}`,
      );
    }
    source = stompSource({
      host: String(o.host ?? env.ACTIVEMQ_HOST ?? 'localhost'),
      port,
      user: String(o.user ?? env.ACTIVEMQ_USER ?? 'admin'),
      password,
      useSsl: o.ssl === true || env.ACTIVEMQ_USE_SSL?.toLowerCase() === 'true',
      caFile: String(o['ca-certs'] ?? env.ACTIVEMQ_SSL_CA_CERTS ?? ''),
      destination: String(o.queue ?? o.destination ?? '/topic/epictopic'),
      msgTypes,
      logger,
    });
  }

  const stats = new ClientStats();
  const dashboard = o.dashboard
    ? new Dashboard(process.stdout, stats, {
        color,
        source: () => source.describe(),
        status: () => source.status(),
      })
    : null;
  const keep = (m: ClientMessage): boolean => {
    if (!msgTypes.includes(String(m.msg_type))) return false;
    if (runs.size > 0 && !runs.has(String(m.run_id ?? m.run_number ?? ''))) return false;
    if (namespace && m.namespace !== undefined && m.namespace !== null && m.namespace !== namespace)
      return false;
    return true;
  };
  const onMessage = (m: ClientMessage) => {
    if (!keep(m)) return;
    stats.add(m);
    if (dashboard) return;
    if (o.json) process.stdout.write(`${JSON.stringify(m)}\n`);
    else
      process.stdout.write(
        `${m.msg_type === 'tf_file_registered' ? formatLine(m, { color }) : formatOther(m, { color })}\n`,
      );
  };

  // Installed before the source starts: a broker that never answers must not swallow Ctrl+C.
  const stopping = onStopSignals({
    graceMs: CLIENT_STOP_BOUND_MS,
    notify: (text) => process.stderr.write(`swf-fastmon client: ${text}\n`),
  });
  if (!o.json && !dashboard)
    process.stderr.write(`swf-fastmon client: ${source.describe()} (Ctrl+C for the summary)\n`);
  let failure: unknown = null;
  let releaseKeys = () => {};
  let keepAlive: NodeJS.Timeout | undefined;
  try {
    // start() stays pending while an unreachable broker is retried: a signal ends the wait.
    const started = await unlessStopped(
      source.start(onMessage).then(() => true),
      stopping,
    );
    if (started) {
      // A finished catalog replay under a dashboard holds nothing open by itself: wait for the user.
      keepAlive = setInterval(() => {}, 1 << 30);
      let quit!: () => void;
      const quitKey = new Promise<void>((resolve) => {
        quit = resolve;
      });
      if (dashboard) {
        dashboard.start();
        releaseKeys = listenForQuit(process.stdin, quit);
      }
      // A catalog replay ends by itself, unless a dashboard is up to look at; a live source at a
      // signal or `q`. A source that fails ends the client either way.
      const ended = dashboard ? source.finished.then(() => new Promise<void>(() => {})) : source.finished;
      await Promise.race([stopping.received, quitKey, ended]);
    }
  } catch (err) {
    failure = err;
  } finally {
    clearInterval(keepAlive);
    releaseKeys();
    dashboard?.stop();
    await source.close();
    stopping.dispose();
  }
  // With --json stdout carries JSON only: the summary is one more JSON line.
  const summary = () =>
    process.stdout.write(
      o.json ? `${JSON.stringify(summaryObject(stats))}\n` : formatSummary(stats, { color }),
    );
  if (failure !== null) {
    // The source's own coded error, one line; what was seen before still gets its summary.
    if (stats.messages > 0) summary();
    throw failure;
  }
  summary();
  return 0;
}
