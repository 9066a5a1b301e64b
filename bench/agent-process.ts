// The consumer under test as its own process: the agent (`swf-fastmon agent`, as in production) or the
// raw consumer, wired to the bench's broker destinations and monitor double.

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { root, slug } from './common.js';
import type { Setup } from './load.js';
import { brokerKind, STOMP_HOST, stompPort } from './stomp-peer.js';

export interface AgentProcess {
  label: string;
  child: ChildProcess;
  logPath: string;
  httpPort: number | null;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export type Kind =
  | { raw: true }
  | { raw: false; workers: number; inline: boolean; env?: Record<string, string>; cli?: string };

export async function startAgent(
  setup: Pick<Setup, 'double' | 'dir' | 'input' | 'output'>,
  kind: Kind,
  label: string,
): Promise<AgentProcess> {
  const logPath = path.join(setup.dir, `${slug(label)}.log`);
  const log = openSync(logPath, 'w');
  const httpPort = kind.raw ? null : await freePort();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    ACTIVEMQ_HOST: STOMP_HOST,
    ACTIVEMQ_PORT: String(stompPort()),
    ACTIVEMQ_USER: process.env.ACTIVEMQ_USER || 'admin',
    ACTIVEMQ_PASSWORD: process.env.ACTIVEMQ_PASSWORD || 'admin',
    SWF_MONITOR_URL: setup.double.url,
    SWF_API_TOKEN: setup.double.token,
    FASTMON_SUBSCRIPTION: setup.input,
    FASTMON_BROADCAST: setup.output,
    FASTMON_DATA_ROOTS: path.join(setup.dir, 'data'),
    FASTMON_CATALOG: path.join(setup.dir, `store-${randomUUID()}.sqlite`),
    FASTMON_HTTP_PORT: String(httpPort ?? -1),
    FASTMON_HEARTBEAT_INTERVAL_S: '60',
    // Each run's double numbers agents from 1: a unique client-id keeps a connection the broker has
    // not yet seen close (or a test agent elsewhere) from refusing this one.
    FASTMON_CLIENT_ID: `fastmon-bench-${randomUUID().slice(0, 8)}`,
  };
  // Tuning: FASTMON_* settings in the bench's environment reach the agent and the raw consumer
  // (FASTMON_MONITOR_CONNECTIONS, FASTMON_MONITOR_PIPELINING); a variant's own settings win.
  // So do the process-level knobs: glibc's malloc settings (MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_,
  // GLIBC_TUNABLES...), libuv's thread pool, Node's own options.
  for (const [key, value] of Object.entries(process.env)) {
    const passed =
      key.startsWith('MALLOC_') || ['GLIBC_TUNABLES', 'UV_THREADPOOL_SIZE', 'NODE_OPTIONS'].includes(key);
    if (
      (passed || (key.startsWith('FASTMON_') && !key.startsWith('FASTMON_BENCH_'))) &&
      value !== undefined
    ) {
      env[key] = value;
    }
  }
  // The broker in use, whatever the bench's own environment says (the raw consumer sizes its window by it).
  env.FASTMON_TEST_BROKER = brokerKind();
  env.ACTIVEMQ_PORT = String(stompPort());
  let args: string[];
  if (kind.raw) {
    args = [path.join(root, 'dist/bench/raw-agent.js')];
  } else {
    if (kind.workers > 0) env.FASTMON_WORKERS = String(kind.workers);
    if (kind.inline) env.FASTMON_INLINE = 'true';
    Object.assign(env, kind.env);
    // `cli`: another build's entry (footprint.ts's FASTMON_BENCH_BEFORE), measured in the same run.
    args = [kind.cli ?? path.join(root, 'dist/src/cli.js'), 'agent'];
  }
  const child = spawn(
    process.execPath,
    [...(process.env.FASTMON_BENCH_NODE_ARGS?.split(' ') ?? []), ...args],
    {
      cwd: setup.dir,
      env,
      stdio: ['ignore', log, log],
    },
  );
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    label,
    child,
    logPath,
    httpPort,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The last lines of a log, for an error message. */
export function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}
