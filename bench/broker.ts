// End to end through real ActiveMQ and the monitor double: throughput against the raw ceiling,
// latency at fixed rates, and memory over a sustained run. The agent runs as its own process
// (`swf-fastmon agent`), as in production; the producer, the listener and the double live here.

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { cpus } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { quick, type Row, root, scratch } from './common.js';
import type { DoubleCommand, DoubleReply } from './double-thread.js';
import { requireBroker, STOMP_HOST, STOMP_PORT, StompPeer } from './stomp-peer.js';

const SAMPLES = 7;

/** FASTMON_BENCH_TRACE: where latency traces and the agents' logs are kept (see BENCHMARKS.md). */
const traceDir = process.env.FASTMON_BENCH_TRACE;

/** A label as a file name. */
function slug(label: string): string {
  return label.replace(/\W+/g, '-');
}

/** The double on its own thread; one command at a time. */
class DoubleThread {
  private chain: Promise<unknown> = Promise.resolve();
  private constructor(
    private readonly worker: Worker,
    readonly url: string,
    readonly token: string,
  ) {}

  static async start(): Promise<DoubleThread> {
    const worker = new Worker(new URL('./double-thread.js', import.meta.url));
    const first = await new Promise<DoubleReply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    return new DoubleThread(worker, first.url, first.token);
  }

  ask(command: DoubleCommand): Promise<DoubleReply> {
    const next = this.chain.then(
      () =>
        new Promise<DoubleReply>((resolve) => {
          this.worker.once('message', resolve);
          this.worker.postMessage(command);
        }),
    );
    this.chain = next;
    return next;
  }

  async close(): Promise<void> {
    await this.ask({ op: 'close' });
    await this.worker.terminate();
  }
}

/** Follows every STF from its stf_ready to the last of its tf_file_registered. */
class Listener {
  private readonly pending = new Map<string, { sentAt: number; remaining: number }>();
  latencies: number[] = [];
  /** Publish time of each completed STF, in the order of `latencies` (for FASTMON_BENCH_TRACE). */
  sentAts: number[] = [];
  completed = 0;
  lastAt = 0;
  stray = 0;
  private waiter: { count: number; resolve: () => void } | null = null;
  onComplete: () => void = () => {};

  constructor(peer: StompPeer, destination: string) {
    peer.subscribe(destination, (body) => this.receive(body));
  }

  expect(key: string, sentAt: number): void {
    this.pending.set(key, { sentAt, remaining: SAMPLES });
  }

  reset(): void {
    this.latencies = [];
    this.sentAts = [];
    this.completed = 0;
    this.stray = 0;
  }

  private receive(body: string): void {
    const message = JSON.parse(body) as { msg_type?: string; stf_filename?: string; run_id?: unknown };
    if (message.msg_type !== 'tf_file_registered') return;
    const key = `${message.run_id}/${message.stf_filename}`;
    const entry = this.pending.get(key);
    if (!entry) {
      this.stray++;
      return;
    }
    if (--entry.remaining > 0) return;
    const now = performance.now();
    this.pending.delete(key);
    this.latencies.push(now - entry.sentAt);
    this.sentAts.push(entry.sentAt);
    this.completed++;
    this.lastAt = now;
    this.onComplete();
    if (this.waiter && this.completed >= this.waiter.count) {
      const { resolve } = this.waiter;
      this.waiter = null;
      resolve();
    }
  }

  waitFor(count: number, timeoutMs: number, what: string): Promise<void> {
    if (this.completed >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(
          new Error(
            `${what}: ${this.completed} of ${count} STFs fully announced after ${timeoutMs / 1000} s ` +
              `(${this.pending.size} waiting, ${this.stray} stray notifications)`,
          ),
        );
      }, timeoutMs);
      this.waiter = {
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  }
}

interface AgentProcess {
  label: string;
  child: ChildProcess;
  logPath: string;
  httpPort: number | null;
  stop(): Promise<void>;
}

interface Setup {
  double: DoubleThread;
  producer: StompPeer;
  listener: Listener;
  dir: string;
  input: string;
  output: string;
  nextRun: number;
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

type Kind = { raw: true } | { raw: false; workers: number; inline: boolean; env?: Record<string, string> };

async function startAgent(setup: Setup, kind: Kind, label: string): Promise<AgentProcess> {
  const logPath = path.join(setup.dir, `${slug(label)}.log`);
  const log = openSync(logPath, 'w');
  const httpPort = kind.raw ? null : await freePort();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    ACTIVEMQ_HOST: STOMP_HOST,
    ACTIVEMQ_PORT: String(STOMP_PORT),
    ACTIVEMQ_USER: process.env.ACTIVEMQ_USER || 'admin',
    ACTIVEMQ_PASSWORD: process.env.ACTIVEMQ_PASSWORD || 'admin',
    SWF_MONITOR_URL: setup.double.url,
    SWF_API_TOKEN: setup.double.token,
    FASTMON_SUBSCRIPTION: setup.input,
    FASTMON_BROADCAST: setup.output,
    FASTMON_DATA_ROOTS: path.join(setup.dir, 'data'),
    FASTMON_OUTBOX: path.join(setup.dir, `outbox-${randomUUID()}.jsonl`),
    FASTMON_HTTP_PORT: String(httpPort ?? -1),
    FASTMON_HEARTBEAT_INTERVAL_S: '60',
    // Each run's double numbers agents from 1: a unique client-id keeps a connection the broker has
    // not yet seen close (or a test agent elsewhere) from refusing this one.
    FASTMON_CLIENT_ID: `fastmon-bench-${randomUUID().slice(0, 8)}`,
  };
  // Tuning: FASTMON_* settings in the bench's environment reach the agent and the raw consumer
  // (FASTMON_MONITOR_CONNECTIONS, FASTMON_MONITOR_PIPELINING); a variant's own settings win.
  // So do the process-level knobs: glibc's arena count, libuv's thread pool, Node's own options.
  for (const [key, value] of Object.entries(process.env)) {
    const passed = ['MALLOC_ARENA_MAX', 'UV_THREADPOOL_SIZE', 'NODE_OPTIONS'].includes(key);
    if (
      (passed || (key.startsWith('FASTMON_') && !key.startsWith('FASTMON_BENCH_'))) &&
      value !== undefined
    ) {
      env[key] = value;
    }
  }
  let args: string[];
  if (kind.raw) {
    args = [path.join(root, 'dist/bench/raw-agent.js')];
  } else {
    if (kind.workers > 0) env.FASTMON_WORKERS = String(kind.workers);
    if (kind.inline) env.FASTMON_INLINE = 'true';
    Object.assign(env, kind.env);
    args = [path.join(root, 'dist/src/cli.js'), 'agent'];
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

function stfName(run: number, seq: number): string {
  return `swf.${run}.${String(seq).padStart(6, '0')}.stf`;
}

/** JSON STFs as the testbed's DAQ simulator writes them, and their StfFile rows in the double. */
async function prepareRun(setup: Setup, count: number): Promise<{ run: number; names: string[] }> {
  const run = setup.nextRun++;
  const data = path.join(setup.dir, 'data');
  mkdirSync(data, { recursive: true });
  const names: string[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const name = stfName(run, seq);
    names.push(name);
    writeFileSync(
      path.join(data, name),
      JSON.stringify({ run_id: run, state: 'run', substate: 'physics', filename: name, sequence: seq }),
    );
  }
  for (let at = 0; at < names.length; at += 5000) {
    await setup.double.ask({ op: 'seed', runNumber: run, stfFilenames: names.slice(at, at + 5000) });
  }
  return { run, names };
}

function publishStf(setup: Setup, run: number, name: string, seq: number): void {
  setup.listener.expect(`${run}/${name}`, performance.now());
  setup.producer.send(
    setup.input,
    JSON.stringify({
      msg_type: 'stf_ready',
      filename: name,
      run_id: String(run),
      file_url: null,
      checksum: null,
      size_bytes: null,
      start: null,
      end: null,
      state: 'run',
      substate: 'physics',
      sequence: seq,
      simulation_tick: seq * 0.6,
      processed_by: 'bench-data-agent',
      sender: 'bench-data-agent',
    }),
    { msg_type: 'stf_ready' },
  );
}

/** CPU seconds (user + system) a process has used so far; NaN when it cannot be read. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function brokerPid(): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('java') && cmdline.includes('activemq')) return Number(entry);
    } catch {}
  }
  return null;
}

/** Where the CPU went during a flood, in CPU milliseconds per STF. */
export interface CpuShare {
  agent: number;
  broker: number;
  /** The bench process: the monitor double's thread, the producer and the listener. */
  bench: number;
}

export const cpuShares: Record<string, CpuShare> = {};

/** stf_ready as fast as the agent takes them: at most `window` STFs outstanding. */
async function flood(setup: Setup, count: number, what: string, agent?: AgentProcess): Promise<number> {
  const broker = brokerPid();
  const before = {
    agent: agent ? cpuSeconds(agent.child.pid as number) : Number.NaN,
    broker: broker ? cpuSeconds(broker) : Number.NaN,
    bench: cpuSeconds(process.pid),
  };
  const rate = await floodOnly(setup, count, what);
  const perStf = (now: number, then: number) => ((now - then) * 1000) / count;
  cpuShares[what] = {
    agent: agent ? perStf(cpuSeconds(agent.child.pid as number), before.agent) : Number.NaN,
    broker: broker ? perStf(cpuSeconds(broker), before.broker) : Number.NaN,
    bench: perStf(cpuSeconds(process.pid), before.bench),
  };
  return rate;
}

async function floodOnly(setup: Setup, count: number, what: string): Promise<number> {
  const { run, names } = await prepareRun(setup, count);
  const { listener } = setup;
  listener.reset();
  const window = 1000;
  let sent = 0;
  const pump = () => {
    while (sent < count && sent - listener.completed < window) {
      publishStf(setup, run, names[sent] as string, sent + 1);
      sent++;
    }
  };
  const started = performance.now();
  listener.onComplete = pump;
  pump();
  await listener.waitFor(count, 120_000 + count * 10, what);
  listener.onComplete = () => {};
  return count / ((listener.lastAt - started) / 1000);
}

/** Milliseconds a thread has run, and waited runnable for a CPU, so far (`/proc/.../schedstat`). */
function schedMs(pid: number): { ran: number; waited: number } {
  try {
    const [ran, waited] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    return { ran: (ran as number) / 1e6, waited: (waited as number) / 1e6 };
  } catch {
    return { ran: Number.NaN, waited: Number.NaN };
  }
}

/** Busy and total jiffies of the whole machine so far (`/proc/stat`). */
function machineJiffies(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number) as number[];
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy, total: busy + (idle ?? 0) + (iowait ?? 0) };
}

/**
 * What a paced run cost the machine: how busy its cores were, and how long the consumer's main
 * thread (the one that handles every message) ran and sat runnable waiting for a core, per second.
 */
export interface Contention {
  machineBusy: number;
  mainRanMsPerS: number;
  mainWaitedMsPerS: number;
}

/**
 * stf_ready at a fixed rate for `seconds`; latencies from publish to the last notification, and,
 * given the consumer's pid, the contention for the cores meanwhile.
 */
async function paced(
  setup: Setup,
  rate: number,
  seconds: number,
  what: string,
  pid?: number,
): Promise<{ latencies: number[]; contention: Contention }> {
  const count = Math.round(rate * seconds);
  const { run, names } = await prepareRun(setup, count);
  setup.listener.reset();
  const machineBefore = machineJiffies();
  const mainBefore = pid === undefined ? null : schedMs(pid);
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      while (sent < due) {
        publishStf(setup, run, names[sent] as string, sent + 1);
        sent++;
      }
      if (sent >= count) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  await setup.listener.waitFor(count, 60_000 + count * 5, what);
  const elapsedS = (performance.now() - started) / 1000;
  const machineAfter = machineJiffies();
  const mainAfter = pid === undefined ? null : schedMs(pid);
  const contention: Contention = {
    machineBusy:
      (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total),
    mainRanMsPerS: mainAfter && mainBefore ? (mainAfter.ran - mainBefore.ran) / elapsedS : Number.NaN,
    mainWaitedMsPerS:
      mainAfter && mainBefore ? (mainAfter.waited - mainBefore.waited) / elapsedS : Number.NaN,
  };
  if (traceDir) {
    // Each STF's publish time (ms from the run's start) and latency, to see whether the slow ones
    // come in bursts (a stall somewhere) or alone (queueing); see BENCHMARKS.md.
    const { sentAts, latencies } = setup.listener;
    const points = latencies.map((ms, i) => [
      Math.round(((sentAts[i] as number) - started) * 10) / 10,
      Math.round(ms * 10) / 10,
    ]);
    mkdirSync(traceDir, { recursive: true });
    const file = path.join(traceDir, `${slug(what)}-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ what, rate, startedAt: performance.timeOrigin + started, points }));
  }
  return { latencies: setup.listener.latencies, contention };
}

/** Warm-up and readiness check: the agent is ready when a batch of STFs makes it all the way. */
async function warmUp(setup: Setup, agent: AgentProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  const { run, names } = await prepareRun(setup, quick ? 100 : 500);
  setup.listener.reset();
  let sent = 0;
  while (setup.listener.completed === 0) {
    if (Date.now() > deadline || agent.child.exitCode !== null) {
      throw new Error(`${agent.label} did not get ready within 30 s`);
    }
    // One probe per 100 ms until one makes it through (the agent is subscribed by then).
    if (sent < names.length) {
      publishStf(setup, run, names[sent] as string, sent + 1);
      sent++;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The subscription is live: the rest as a burst, for the JIT. Probes sent before the agent
  // subscribed are gone (a topic keeps nothing for absent subscribers).
  const probes = sent;
  for (; sent < names.length; sent++) publishStf(setup, run, names[sent] as string, sent + 1);
  await setup.listener.waitFor(names.length - probes, 30_000, `${agent.label} warm-up`);
  await new Promise((r) => setTimeout(r, 300));
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

async function withAgent<T>(
  setup: Setup,
  kind: Kind,
  label: string,
  body: (agent: AgentProcess) => Promise<T>,
): Promise<T> {
  await setup.double.ask({ op: 'reset' });
  const agent = await startAgent(setup, kind, label);
  try {
    await warmUp(setup, agent);
    return await body(agent);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- ${label} log tail:\n${tail(agent.logPath)}`);
  } finally {
    await agent.stop();
    // With FASTMON_BENCH_TRACE the agent's log (e.g. --trace-gc output) is kept next to the traces.
    if (traceDir) {
      mkdirSync(traceDir, { recursive: true });
      copyFileSync(agent.logPath, path.join(traceDir, `${slug(label)}-${Date.now()}.log`));
    }
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

async function heapMb(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const used = /^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1];
  return used ? Number(used) / 2 ** 20 : Number.NaN;
}

export interface MemoryTrace {
  seconds: number[];
  rssMb: number[];
  heapMb: number[];
}

/** Sustained load at `rate` for `seconds`, sampling the agent's RSS and heap every second. */
async function sustained(
  setup: Setup,
  agent: AgentProcess,
  rate: number,
  seconds: number,
): Promise<MemoryTrace & { idleRssMb: number; latencies: number[] }> {
  const pid = agent.child.pid as number;
  const idleRssMb = rssMb(pid);
  const trace: MemoryTrace = { seconds: [], rssMb: [], heapMb: [] };
  const started = performance.now();
  const sampler = setInterval(() => {
    const at = (performance.now() - started) / 1000;
    const rss = rssMb(pid);
    void heapMb(agent.httpPort as number).then(
      (heap) => {
        trace.seconds.push(Math.round(at));
        trace.rssMb.push(Math.round(rss * 10) / 10);
        trace.heapMb.push(Math.round(heap * 10) / 10);
      },
      () => {},
    );
  }, 1000);
  try {
    const { latencies } = await paced(setup, rate, seconds, `${agent.label} sustained`);
    return { ...trace, idleRssMb, latencies };
  } finally {
    clearInterval(sampler);
  }
}

/** Least-squares slope in MB per minute over the second half of a trace. */
function slopePerMinute(xs: number[], ys: number[]): number {
  const from = Math.floor(xs.length / 2);
  const x = xs.slice(from);
  const y = ys.slice(from);
  if (x.length < 3) return Number.NaN;
  const mx = x.reduce((a, b) => a + b, 0) / x.length;
  const my = y.reduce((a, b) => a + b, 0) / y.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += ((x[i] as number) - mx) * ((y[i] as number) - my);
    den += ((x[i] as number) - mx) ** 2;
  }
  return (num / den) * 60;
}

export interface BrokerDetails {
  memory?: MemoryTrace;
  /** Per consumer ('raw', 'agent') and rate: the cores' contention during its latency run. */
  contention?: { raw: Record<number, Contention>; agent: Record<number, Contention> };
}

export const brokerDetails: BrokerDetails = {};

/** The parts of the broker scenario that FASTMON_BENCH_ONLY can name. */
export const BROKER_PARTS = ['ceiling', 'throughput', 'latency', 'memory'];

/** `only`: a subset of BROKER_PARTS (for profiling one of them). */
export async function broker(only = process.env.FASTMON_BENCH_ONLY?.split(',')): Promise<Row[]> {
  const parts = only?.map((name) => name.trim()).filter((name) => name !== 'broker');
  const wanted = (name: string) => !parts || parts.length === 0 || parts.includes(name);
  await requireBroker();
  const id = randomUUID().slice(0, 8);
  const double = await DoubleThread.start();
  const producer = await StompPeer.connect();
  const listening = await StompPeer.connect();
  const setup: Setup = {
    double,
    producer,
    listener: undefined as unknown as Listener,
    dir: scratch('broker'),
    input: `/topic/fastmon.bench.in.${id}`,
    output: `/topic/fastmon.bench.out.${id}`,
    nextRun: 700001,
  };
  setup.listener = new Listener(listening, setup.output);
  const rows: Row[] = [];
  const floodCount = quick ? 800 : 10_000;
  const rates = process.env.FASTMON_BENCH_RATES?.split(',').map(Number) ?? [50, 200, 500];
  const paceSeconds = Number(process.env.FASTMON_BENCH_PACE_SECONDS) || (quick ? 1 : 15);
  const memorySeconds = Number(process.env.FASTMON_BENCH_MEMORY_SECONDS) || (quick ? 3 : 120);
  // The rate of the p99 target: sustainable here, so memory shows the agent, not a backlog.
  const memoryRate = 200;
  const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
  const rawLatency = new Map<number, number[]>();
  const contention = { raw: {} as Record<number, Contention>, agent: {} as Record<number, Contention> };
  brokerDetails.contention = contention;
  let ceiling = Number.NaN;
  const throughputRow = (label: string, rate: number): Row => ({
    name: `throughput, ${label}`,
    value: rate,
    unit: 'STFs/s',
    baseline: 'ceiling',
    ratio: rate / ceiling,
  });
  try {
    // One session per process started: the raw consumer (ceiling, then its latencies), inline, a
    // pool of 1, the defaults (a pool of one worker per core: throughput, then latency), memory.
    if (wanted('ceiling') || wanted('latency')) {
      await withAgent(setup, { raw: true }, 'raw', async (a) => {
        if (wanted('ceiling')) ceiling = await flood(setup, floodCount, a.label, a);
        if (wanted('latency')) {
          for (const rate of rates) {
            const run = await paced(setup, rate, paceSeconds, `raw at ${rate}/s`, a.child.pid);
            rawLatency.set(rate, sorted(run.latencies));
            contention.raw[rate] = run.contention;
          }
        }
      });
      if (wanted('ceiling'))
        rows.push({
          name: `ceiling: raw consumer + poster, ${floodCount} STFs (x${SAMPLES} rows and notifications)`,
          value: ceiling,
          unit: 'STFs/s',
          baseline: '-',
          ratio: 1,
        });
    }
    if (wanted('throughput')) {
      const variants: [string, Kind][] = [
        ['agent inline (no pool)', { raw: false, workers: 1, inline: true }],
        ['agent, pool of 1 worker', { raw: false, workers: 1, inline: false }],
      ];
      if (cpus().length > 2)
        variants.push(['agent, pool of 2 workers', { raw: false, workers: 2, inline: false }]);
      for (const [label, kind] of variants) {
        rows.push(
          throughputRow(
            label,
            await withAgent(setup, kind, label, (a) => flood(setup, floodCount, a.label, a)),
          ),
        );
      }
    }
    const defaults = `agent, pool of ${cpus().length} workers (defaults)`;
    if (wanted('throughput') || wanted('latency'))
      await withAgent(setup, { raw: false, workers: 0, inline: false }, defaults, async (a) => {
        if (wanted('throughput'))
          rows.push(throughputRow(defaults, await flood(setup, floodCount, a.label, a)));
        if (wanted('latency')) {
          for (const rate of rates) {
            const run = await paced(setup, rate, paceSeconds, `${a.label} at ${rate}/s`, a.child.pid);
            const agent = sorted(run.latencies);
            const raw = rawLatency.get(rate) as number[];
            const rawContention = contention.raw[rate] as Contention;
            contention.agent[rate] = run.contention;
            for (const p of [50, 99, 100]) {
              const label = p === 100 ? 'max' : `p${p}`;
              rows.push({
                name: `latency at ${rate} STFs/s, ${label} (publish → last notification)`,
                value: percentile(agent, p),
                unit: 'ms',
                baseline: `raw ${label}`,
                ratio: percentile(agent, p) / percentile(raw, p),
              });
            }
            // The tail's limit: how busy the two cores were, and how long the thread that handles
            // every message sat runnable with no core free (see BENCHMARKS.md).
            rows.push(
              {
                name: `  cores busy meanwhile (all processes)`,
                value: run.contention.machineBusy * 100,
                unit: '%',
                baseline: 'raw run',
                ratio: run.contention.machineBusy / rawContention.machineBusy,
              },
              {
                name: `  agent's main thread runnable, waiting for a core`,
                value: run.contention.mainWaitedMsPerS,
                unit: 'ms/s',
                baseline: "raw consumer's",
                ratio: run.contention.mainWaitedMsPerS / rawContention.mainWaitedMsPerS,
              },
            );
          }
        }
        // --quick has no time for a fresh agent: its memory rows come from this one, after the flood.
        if (quick && wanted('memory')) rows.push(...(await memoryRows(setup, a, memoryRate, memorySeconds)));
      });
    // Memory in a fresh agent: a flood leaves the heap grown, which says nothing about steady state.
    if (!quick && wanted('memory')) {
      await withAgent(
        setup,
        { raw: false, workers: 0, inline: false },
        `${defaults}, sustained`,
        async (a) => {
          rows.push(...(await memoryRows(setup, a, memoryRate, memorySeconds)));
        },
      );
    }
    // CPU per STF is steadier than rates on a shared machine, and says who spends it.
    const raw = cpuShares.raw;
    for (const [label, share] of Object.entries(cpuShares)) {
      rows.push(
        {
          name: `CPU per STF in the ${label === 'raw' ? 'raw consumer' : label}`,
          value: share.agent,
          unit: 'ms',
          baseline: 'raw consumer',
          ratio: share.agent / (raw?.agent ?? Number.NaN),
        },
        {
          name: '  broker + bench (double, producer, listener) meanwhile',
          value: share.broker + share.bench,
          unit: 'ms',
          baseline: 'raw run',
          ratio: (share.broker + share.bench) / ((raw?.broker ?? Number.NaN) + (raw?.bench ?? Number.NaN)),
        },
      );
    }
  } finally {
    await producer.close();
    await listening.close();
    await double.close();
  }
  // Kept on failure: the agents' logs are there.
  rmSync(setup.dir, { recursive: true, force: true });
  return rows;
}

async function memoryRows(setup: Setup, agent: AgentProcess, rate: number, seconds: number): Promise<Row[]> {
  const m = await sustained(setup, agent, rate, seconds);
  brokerDetails.memory = { seconds: m.seconds, rssMb: m.rssMb, heapMb: m.heapMb };
  const maxRss = Math.max(...m.rssMb);
  const latencies = [...m.latencies].sort((x, y) => x - y);
  return [
    {
      name: `memory: peak RSS over ${seconds} s at ${rate} STFs/s`,
      value: maxRss,
      unit: 'MB',
      baseline: 'RSS before the run',
      ratio: maxRss / m.idleRssMb,
    },
    // A slope over a few seconds (--quick) is noise, not a trend.
    ...(seconds >= 30
      ? [
          {
            name: 'memory: RSS slope (second half of the run)',
            value: slopePerMinute(m.seconds, m.rssMb),
            unit: 'MB/min',
            baseline: '-',
            ratio: 1,
          },
        ]
      : []),
    {
      name: 'memory: peak heap used',
      value: Math.max(...m.heapMb),
      unit: 'MB',
      baseline: 'peak RSS',
      ratio: Math.max(...m.heapMb) / maxRss,
    },
    {
      name: `latency over the sustained run, p99`,
      value: percentile(latencies, 99),
      unit: 'ms',
      baseline: 'p50',
      ratio: percentile(latencies, 99) / percentile(latencies, 50),
    },
  ];
}
