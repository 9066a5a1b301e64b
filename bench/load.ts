// What the bench sends and hears: the monitor double on its thread, the STFs of a run, stf_ready
// at full speed or at a fixed rate, and the listener that times each STF to its last notification.

import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { stfFilename } from '../src/gen/plan.js';
import type { AgentProcess } from './agent-process.js';
import { quick, slug, traceDir } from './common.js';
import type { DoubleCommand, DoubleReply } from './double-thread.js';
import { brokerPid, cpuSeconds, machineJiffies, schedMs } from './procfs.js';
import { brokerKind, type StompPeer } from './stomp-peer.js';

export const SAMPLES = 7;

/** The double on its own thread; one command at a time. */
export class DoubleThread {
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
export class Listener {
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

export interface Setup {
  double: DoubleThread;
  producer: StompPeer;
  listener: Listener;
  dir: string;
  input: string;
  output: string;
  nextRun: number;
  /** Registers a run's STFs elsewhere too (the PostgreSQL scenario seeds its database). */
  seed?: (run: number, names: string[]) => Promise<void>;
}

/** JSON STFs as the testbed's DAQ simulator writes them, and their StfFile rows in the double. */
async function prepareRun(setup: Setup, count: number): Promise<{ run: number; names: string[] }> {
  const run = setup.nextRun++;
  const data = path.join(setup.dir, 'data');
  mkdirSync(data, { recursive: true });
  const names: string[] = [];
  for (let seq = 1; seq <= count; seq++) {
    // A turn for the event loop now and then: a ten-minute run writes 120,000 files (about 40 s).
    // With the loop held that long the bench's STOMP peers miss their 10 s heart-beats, and in one
    // run none of the run's stf_ready reached the agent (most likely the broker had dropped the
    // producer's connection).
    if (seq % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
    const name = stfFilename(run, seq);
    names.push(name);
    writeFileSync(
      path.join(data, name),
      JSON.stringify({ run_id: run, state: 'run', substate: 'physics', filename: name, sequence: seq }),
    );
  }
  for (let at = 0; at < names.length; at += 5000) {
    await setup.double.ask({ op: 'seed', runNumber: run, stfFilenames: names.slice(at, at + 5000) });
  }
  await setup.seed?.(run, names);
  // Written to disk before the clock starts. Left dirty, the files go out ~30 s later
  // (vm.dirty_expire_centisecs), and writing back a long run's 120,000 of them took the kernel up to
  // 0.6 of the two cores for seconds, in the middle of the run (BENCHMARKS.md, "The latency tail").
  await promisify(execFile)('sync', ['--file-system', data]);
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

/** Where the CPU went during a flood, in CPU milliseconds per STF. */
export interface CpuShare {
  agent: number;
  broker: number;
  /** The bench process: the monitor double's thread, the producer and the listener. */
  bench: number;
}

export const cpuShares: Record<string, CpuShare> = {};

/** stf_ready as fast as the agent takes them: at most `window` STFs outstanding. */
export async function flood(
  setup: Setup,
  count: number,
  what: string,
  agent?: AgentProcess,
): Promise<number> {
  // The STF files and their rows are made before the CPU is read: writing 10,000 files costs the bench
  // process ~0.3 ms of system time per STF, which is preparation, not serving.
  const prepared = await prepareRun(setup, count);
  const broker = brokerPid(brokerKind());
  const before = {
    agent: agent ? cpuSeconds(agent.child.pid as number) : Number.NaN,
    broker: broker ? cpuSeconds(broker) : Number.NaN,
    bench: cpuSeconds(process.pid),
  };
  const rate = await floodOnly(setup, prepared, count, what);
  const perStf = (now: number, then: number) => ((now - then) * 1000) / count;
  cpuShares[what] = {
    agent: agent ? perStf(cpuSeconds(agent.child.pid as number), before.agent) : Number.NaN,
    broker: broker ? perStf(cpuSeconds(broker), before.broker) : Number.NaN,
    bench: perStf(cpuSeconds(process.pid), before.bench),
  };
  return rate;
}

async function floodOnly(
  setup: Setup,
  { run, names }: { run: number; names: string[] },
  count: number,
  what: string,
): Promise<number> {
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
export async function paced(
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

/**
 * Warm-up and readiness check: the agent is ready when a batch of STFs makes it all the way
 * (`burst` false: when the first STF does).
 */
export async function warmUp(setup: Setup, agent: AgentProcess, burst = true): Promise<void> {
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
  // Memory rows that model a quiet agent stop here: a burst would leave V8's heaps grown.
  if (!burst) return;
  // The subscription is live: the rest as a burst, for the JIT. Probes sent before the agent
  // subscribed are gone (a topic keeps nothing for absent subscribers).
  const probes = sent;
  for (; sent < names.length; sent++) publishStf(setup, run, names[sent] as string, sent + 1);
  await setup.listener.waitFor(names.length - probes, 30_000, `${agent.label} warm-up`);
  await new Promise((r) => setTimeout(r, 300));
}
