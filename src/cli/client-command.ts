// `swf-fastmon client`: TF notifications live, per-run statistics, a dashboard, a summary on Ctrl+C.

import { Dashboard } from '../client/dashboard.js';
import { formatLine, formatOther, useColor } from '../client/line.js';
import { type ClientMessage, catalogSource, type Source, sseSource, stompSource } from '../client/sources.js';
import { ClientStats } from '../client/stats.js';
import { formatSummary, summaryObject } from '../client/summary.js';
import { FastmonError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { registerSecret } from '../log/redact.js';

const DEFAULT_TYPES = ['tf_file_registered', 'fastmon_summary', 'fastmon_status'];

interface Flag {
  names: string[];
  value: boolean;
  doc: string;
}

/** The original client's options (Typer: --host/-h, --port/-p, …) and the new ones. */
const FLAGS: Record<string, Flag> = {
  host: { names: ['--host', '-h'], value: true, doc: 'broker host (ACTIVEMQ_HOST, default localhost)' },
  port: { names: ['--port', '-p'], value: true, doc: 'STOMP port (ACTIVEMQ_PORT, default 61612)' },
  user: { names: ['--user', '-u'], value: true, doc: 'broker user (ACTIVEMQ_USER, default admin)' },
  password: { names: ['--password'], value: true, doc: 'broker password (ACTIVEMQ_PASSWORD, default admin)' },
  queue: {
    names: ['--queue', '-q', '--destination'],
    value: true,
    doc: 'destination (default /topic/epictopic)',
  },
  ssl: { names: ['--ssl'], value: false, doc: 'TLS to the broker (ACTIVEMQ_USE_SSL)' },
  caCerts: { names: ['--ca-certs'], value: true, doc: 'CA bundle for TLS (ACTIVEMQ_SSL_CA_CERTS)' },
  sse: {
    names: ['--sse'],
    value: false,
    doc: "read swf-monitor's SSE relay (SWF_MONITOR_URL, SWF_API_TOKEN)",
  },
  catalog: { names: ['--catalog'], value: true, doc: 'replay a local catalog file' },
  run: { names: ['--run'], value: true, doc: 'only this run (comma-separated list allowed)' },
  namespace: { names: ['--namespace'], value: true, doc: 'only this testbed namespace' },
  msgTypes: {
    names: ['--msg-types'],
    value: true,
    doc: `message types (default ${DEFAULT_TYPES.join(',')})`,
  },
  json: {
    names: ['--json'],
    value: false,
    doc: 'stdout: one JSON object per line, the summary last (msg_type fastmon_client_summary)',
  },
  dashboard: { names: ['--dashboard'], value: false, doc: 'full-screen view, refreshed in place' },
  help: { names: ['--help'], value: false, doc: 'this help' },
};

type Options = Partial<Record<keyof typeof FLAGS, string | boolean>>;

function parse(argv: readonly string[]): Options {
  const byName = new Map<string, [keyof typeof FLAGS, Flag]>();
  for (const [key, flag] of Object.entries(FLAGS)) for (const n of flag.names) byName.set(n, [key, flag]);
  const options: Options = {};
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = (argv[i] as string).split(/=(.*)/s, 2) as [string, string | undefined];
    const found = byName.get(name);
    if (!found) throw new FastmonError('CONFIG_INVALID', `client: unknown option ${name} (see --help)`);
    const [key, flag] = found;
    if (!flag.value) {
      options[key] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new FastmonError('CONFIG_INVALID', `client: option ${name} needs a value`);
    options[key] = value;
  }
  return options;
}

function list(value: string | boolean | undefined): string[] {
  return typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

export async function clientCommand(argv: readonly string[]): Promise<number> {
  const o = parse(argv);
  if (o.help) {
    process.stdout.write(help());
    return 0;
  }
  const env = process.env;
  const msgTypes = list(o.msgTypes).length > 0 ? list(o.msgTypes) : DEFAULT_TYPES;
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
    if (!url)
      throw new FastmonError('CONFIG_INVALID', 'client --sse needs SWF_MONITOR_URL (and SWF_API_TOKEN)');
    source = sseSource({ url, token: env.SWF_API_TOKEN ?? '', msgTypes, runIds: [...runs], logger });
  } else {
    const port = Number(o.port ?? env.ACTIVEMQ_PORT ?? 61612);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new FastmonError(
        'CONFIG_INVALID',
        `client --port: expected a port number, got "${o.port ?? env.ACTIVEMQ_PORT}"`,
      );
    }
    source = stompSource({
      host: String(o.host ?? env.ACTIVEMQ_HOST ?? 'localhost'),
      port,
      user: String(o.user ?? env.ACTIVEMQ_USER ?? 'admin'),
      password,
      useSsl: o.ssl === true || env.ACTIVEMQ_USE_SSL?.toLowerCase() === 'true',
      caFile: String(o.caCerts ?? env.ACTIVEMQ_SSL_CA_CERTS ?? ''),
      destination: String(o.queue ?? '/topic/epictopic'),
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

  const stopped = new Promise<string>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve(signal));
  });
  if (!o.json && !dashboard)
    process.stderr.write(`swf-fastmon client: ${source.describe()} (Ctrl+C for the summary)\n`);
  // Nothing else may hold the process open (a finished catalog replay under a dashboard): wait for the signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await source.start(onMessage);
  dashboard?.start();
  // A catalog replay ends by itself (unless a dashboard is up to look at); a live source at a signal.
  await (dashboard ? stopped : Promise.race([stopped, source.finished]));
  clearInterval(keepAlive);
  dashboard?.stop();
  await source.close();
  // With --json stdout carries JSON only: the summary is one more JSON line.
  process.stdout.write(
    o.json ? `${JSON.stringify(summaryObject(stats))}\n` : formatSummary(stats, { color }),
  );
  return 0;
}

function help(): string {
  return `Usage: swf-fastmon client [options]

Shows TF sample notifications live: from ActiveMQ (default /topic/epictopic), from swf-monitor's SSE
relay (--sse), or from a local catalog (--catalog FILE). Ctrl+C or SIGTERM prints a summary and exits 0.
Unlike the original client it needs no swf-monitor token and registers nothing.

Options:
${Object.values(FLAGS)
  .map((f) => `  ${f.names.join(', ')}${f.value ? ' VALUE' : ''}`.padEnd(36) + f.doc)
  .join('\n')}
`;
}
