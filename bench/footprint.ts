// The agent's own footprint beside the raw consumer's: RSS idle (connected and subscribed), and the
// testbed's workload (stf_ready without sizes or files, 7 rows per STF, at 2 STFs/s) as an operator sees it.

import { spawn } from 'node:child_process';
import path from 'node:path';
import type { AgentProcess, Kind } from './agent-process.js';
import { percentile, quick, type Row } from './common.js';
import { paced, type Setup } from './load.js';
import { cpuSeconds, rssMb, threadCount } from './procfs.js';

/** broker.ts's withAgent without its setup argument; `burst` false: ready after one STF, no warm-up burst. */
export type WithAgent = <T>(
  kind: Kind,
  label: string,
  body: (agent: AgentProcess) => Promise<T>,
  burst?: boolean,
) => Promise<T>;

/**
 * The testbed's agent: no data roots, so every STF is sampled from its message (the testbed's
 * stf_ready has no size and its file is not on the agent's disk); otherwise the defaults.
 */
const TESTBED: Kind = { raw: false, workers: 0, inline: false, env: { FASTMON_DATA_ROOTS: '' } };
const RAW: Kind = { raw: true };
/**
 * FASTMON_BENCH_BEFORE: the `dist/src/cli.js` of another build (a copy of dist/ made before a change,
 * kept inside the checkout so it finds node_modules), run with the same settings in the same run.
 */
const beforeCli = process.env.FASTMON_BENCH_BEFORE;
const BEFORE: Kind | null = beforeCli ? { ...TESTBED, cli: path.resolve(beforeCli) } : null;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Peak RSS of `pid` while `body` runs, read from /proc every `everyMs`. */
async function peakRss<T>(pid: number, everyMs: number, body: () => Promise<T>): Promise<[T, number]> {
  let peak = rssMb(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, everyMs);
  try {
    const result = await body();
    return [result, Math.max(peak, rssMb(pid))];
  } finally {
    clearInterval(timer);
  }
}

/** Node.js itself: a process that only keeps its event loop alive. */
async function bareNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await sleep(3000);
    return rssMb(child.pid as number);
  } finally {
    child.kill('SIGTERM');
  }
}

export async function footprint(
  setup: Setup,
  withAgent: WithAgent,
  parts: { idle: boolean; testbed: boolean },
): Promise<Row[]> {
  const rows: Row[] = [];
  if (parts.idle) {
    // Connected, subscribed and past its first STF, then left alone: the RSS an idle agent holds.
    const idle = (kind: Kind, label: string) =>
      withAgent(
        kind,
        label,
        async (a) => {
          await sleep(quick ? 2000 : 5000);
          if (a.child.exitCode !== null || a.child.signalCode !== null)
            throw new Error(`${label} exited (${a.child.exitCode ?? a.child.signalCode}) while idle`);
          const [, peak] = await peakRss(a.child.pid as number, 500, () => sleep(quick ? 1000 : 5000));
          return { peak, threads: threadCount(a.child.pid as number) };
        },
        false,
      );
    const rawIdle = await idle(RAW, 'raw, idle');
    const beforeIdle = BEFORE && (await idle(BEFORE, 'agent before, idle'));
    const agentIdle = await idle(TESTBED, 'agent (testbed settings), idle');
    const [raw, agent, before] = [rawIdle.peak, agentIdle.peak, beforeIdle?.peak ?? null];
    const bare = await bareNodeRss();
    rows.push(
      {
        name: 'memory: RSS idle, raw consumer',
        value: raw,
        unit: 'MB',
        baseline: 'bare Node.js',
        ratio: raw / bare,
      },
      {
        name: 'memory: RSS idle, agent',
        value: agent,
        unit: 'MB',
        baseline: 'raw consumer idle',
        ratio: agent / raw,
      },
      { name: '  bare Node.js process (event loop only)', value: bare, unit: 'MB', baseline: '-', ratio: 1 },
      {
        // Each worker thread is an isolate: the first thing to look at when idle RSS moves.
        name: '  threads of the idle agent',
        value: agentIdle.threads,
        unit: '',
        baseline: "raw consumer's",
        ratio: agentIdle.threads / rawIdle.threads,
      },
    );
    if (before !== null)
      rows.push({
        name: '  agent built from FASTMON_BENCH_BEFORE, idle',
        value: before,
        unit: 'MB',
        baseline: 'raw consumer idle',
        ratio: before / raw,
      });
    if (beforeIdle)
      rows.push({
        name: '  threads of the idle agent built from FASTMON_BENCH_BEFORE',
        value: beforeIdle.threads,
        unit: '',
        baseline: "raw consumer's",
        ratio: beforeIdle.threads / rawIdle.threads,
      });
  }
  if (parts.testbed) {
    const seconds = Number(process.env.FASTMON_BENCH_TESTBED_SECONDS) || (quick ? 10 : 300);
    const rate = 2;
    const run = (kind: Kind, label: string) =>
      withAgent(
        kind,
        label,
        async (a) => {
          const pid = a.child.pid as number;
          const cpuBefore = cpuSeconds(pid);
          const [result, peak] = await peakRss(pid, 1000, () => paced(setup, rate, seconds, label, pid));
          const cpuMsPerStf = ((cpuSeconds(pid) - cpuBefore) * 1000) / (rate * seconds);
          return { peak, cpuMsPerStf, latencies: [...result.latencies].sort((x, y) => x - y) };
        },
        false,
      );
    const raw = await run(RAW, 'raw, testbed shape');
    const before = BEFORE && (await run(BEFORE, 'agent before, testbed shape'));
    const agent = await run(TESTBED, 'agent, testbed shape');
    const shape = `testbed shape (no sizes, no files), ${rate} STFs/s for ${seconds} s`;
    rows.push(
      {
        name: `memory: peak RSS, ${shape}`,
        value: agent.peak,
        unit: 'MB',
        baseline: `raw consumer: ${raw.peak.toFixed(1)} MB`,
        ratio: agent.peak / raw.peak,
      },
      ...[50, 99].map((p) => ({
        name: `  latency p${p} (publish → 7th notification)`,
        value: percentile(agent.latencies, p),
        unit: 'ms',
        baseline: `raw p${p}`,
        ratio: percentile(agent.latencies, p) / percentile(raw.latencies, p),
      })),
      {
        // At 2 STFs/s the process's idle timers are part of it, as they are on the testbed.
        name: '  CPU per STF (all threads, timers included)',
        value: agent.cpuMsPerStf,
        unit: 'ms',
        baseline: 'raw consumer',
        ratio: agent.cpuMsPerStf / raw.cpuMsPerStf,
      },
    );
    if (before !== null)
      rows.push(
        {
          name: `  agent built from FASTMON_BENCH_BEFORE: peak RSS`,
          value: before.peak,
          unit: 'MB',
          baseline: 'raw consumer',
          ratio: before.peak / raw.peak,
        },
        {
          name: '  agent built from FASTMON_BENCH_BEFORE: CPU per STF',
          value: before.cpuMsPerStf,
          unit: 'ms',
          baseline: 'raw consumer',
          ratio: before.cpuMsPerStf / raw.cpuMsPerStf,
        },
      );
  }
  return rows;
}
