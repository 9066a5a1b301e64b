// End to end through real ActiveMQ and the monitor double: throughput against the raw ceiling,
// latency at fixed rates, and memory over a sustained run. The agent runs as its own process
// (`swf-fastmon agent`, see agent-process.ts); the producer, the listener and the double live here
// (load.ts).

import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { type AgentProcess, type Kind, startAgent, tail } from './agent-process.js';
import { percentile, quick, type Row, scratch, slug, traceDir } from './common.js';
import { cost } from './cost.js';
import { footprint } from './footprint.js';
import {
  type Contention,
  type CpuShare,
  cpuShares,
  DoubleThread,
  flood,
  Listener,
  paced,
  SAMPLES,
  type Setup,
  warmUp,
} from './load.js';
import { rssMb } from './procfs.js';
import { type BenchBroker, benchBrokers, requireBroker, StompPeer, useBroker } from './stomp-peer.js';

export async function withAgent<T>(
  setup: Setup,
  kind: Kind,
  label: string,
  body: (agent: AgentProcess) => Promise<T>,
  burst = true,
): Promise<T> {
  await setup.double.ask({ op: 'reset' });
  const agent = await startAgent(setup, kind, label);
  try {
    await warmUp(setup, agent, burst);
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
    // The raw consumer has no /metrics: its heap is not traced.
    const heap = agent.httpPort === null ? Promise.resolve(Number.NaN) : heapMb(agent.httpPort);
    void heap.then(
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
  /** Per consumer: where the CPU went during its flood (load.ts). */
  cpuShares?: Record<string, CpuShare>;
}

/** Per broker (FASTMON_BENCH_BROKERS), saved in the JSON beside the rows. */
export const brokerDetails: { brokers: Partial<Record<BenchBroker, BrokerDetails>> } = { brokers: {} };

/** The parts of the broker scenario that FASTMON_BENCH_ONLY can name. */
export const BROKER_PARTS = ['ceiling', 'throughput', 'latency', 'memory', 'idle', 'testbed', 'cost'];

/**
 * The end-to-end scenarios on each broker of FASTMON_BENCH_BROKERS in turn (default Artemis, then
 * Classic): the raw ceiling and the agent side by side on the same broker, each row named and
 * tagged with its broker. `only`: a subset of BROKER_PARTS (for profiling one of them).
 */
export async function broker(only = process.env.FASTMON_BENCH_ONLY?.split(',')): Promise<Row[]> {
  const brokers = benchBrokers();
  const rows: Row[] = [];
  try {
    for (const kind of brokers) {
      useBroker(kind);
      const details: BrokerDetails = {};
      brokerDetails.brokers[kind] = details;
      const measured = await brokerOn(details, only);
      rows.push(...measured.map((row) => ({ ...row, name: `[${kind}] ${row.name}`, broker: kind })));
      // Floods are keyed by consumer label, the same on each broker: each broker keeps its own.
      details.cpuShares = { ...cpuShares };
      for (const label of Object.keys(cpuShares)) delete cpuShares[label];
    }
  } finally {
    // Later scenarios (postgres) run on the first broker.
    useBroker(brokers[0] as BenchBroker);
  }
  return rows;
}

async function brokerOn(details: BrokerDetails, only: string[] | undefined): Promise<Row[]> {
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
  details.contention = contention;
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
        if (quick && wanted('memory'))
          rows.push(...(await memoryRows(details, setup, a, memoryRate, memorySeconds)));
      });
    // Memory in a fresh agent: a flood leaves the heap grown, which says nothing about steady state.
    // The raw consumer runs the same load first, as the baseline.
    if (!quick && wanted('memory')) {
      const rawPeak = await withAgent(setup, { raw: true }, 'raw, sustained', async (a) => {
        const m = await sustained(setup, a, memoryRate, memorySeconds);
        return Math.max(...m.rssMb);
      });
      await withAgent(
        setup,
        { raw: false, workers: 0, inline: false },
        `${defaults}, sustained`,
        async (a) => {
          rows.push(...(await memoryRows(details, setup, a, memoryRate, memorySeconds, rawPeak)));
        },
      );
    }
    if (wanted('idle') || wanted('testbed'))
      rows.push(
        ...(await footprint(setup, (kind, label, body, burst) => withAgent(setup, kind, label, body, burst), {
          idle: wanted('idle'),
          testbed: wanted('testbed'),
        })),
      );
    if (wanted('cost'))
      rows.push(
        ...(await cost(setup, (kind, label, body, burst) => withAgent(setup, kind, label, body, burst))),
      );
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

async function memoryRows(
  details: BrokerDetails,
  setup: Setup,
  agent: AgentProcess,
  rate: number,
  seconds: number,
  rawPeak?: number,
): Promise<Row[]> {
  const m = await sustained(setup, agent, rate, seconds);
  details.memory = { seconds: m.seconds, rssMb: m.rssMb, heapMb: m.heapMb };
  const maxRss = Math.max(...m.rssMb);
  const latencies = [...m.latencies].sort((x, y) => x - y);
  return [
    {
      name: `memory: peak RSS over ${seconds} s at ${rate} STFs/s`,
      value: maxRss,
      unit: 'MB',
      baseline: rawPeak === undefined ? 'RSS before the run' : `raw consumer: ${rawPeak.toFixed(1)} MB`,
      ratio: maxRss / (rawPeak ?? m.idleRssMb),
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
