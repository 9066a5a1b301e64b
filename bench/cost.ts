// The agent's CPU per STF and throughput beside the raw consumer's, in alternating rounds: what its
// extra work costs (issue 19), with the work an operator can switch off measured as variants.

import path from 'node:path';
import type { Kind } from './agent-process.js';
import { quick, type Row } from './common.js';
import type { WithAgent } from './footprint.js';
import { cpuShares, flood, type Setup } from './load.js';

/** The testbed's agent (no data roots: STFs are sampled from the message, no pool), as in footprint.ts. */
const TESTBED = { raw: false, workers: 0, inline: false, env: { FASTMON_DATA_ROOTS: '' } } as const;

function variants(): [string, Kind][] {
  const list: [string, Kind][] = [
    ['raw consumer', { raw: true }],
    ['agent (testbed settings)', { ...TESTBED }],
  ];
  const before = process.env.FASTMON_BENCH_BEFORE;
  if (before) list.push(['agent built from FASTMON_BENCH_BEFORE', { ...TESTBED, cli: path.resolve(before) }]);
  // What the agent does that the raw consumer does not and an operator may switch off: shipping each
  // log record to swf-monitor's AppLog (one more POST per STF), and the info line per STF.
  list.push(
    ['agent, no AppLog shipping', { ...TESTBED, env: { ...TESTBED.env, FASTMON_MONITOR_LOG_LEVEL: 'off' } }],
    [
      'agent, no AppLog shipping, log level warn',
      { ...TESTBED, env: { ...TESTBED.env, FASTMON_MONITOR_LOG_LEVEL: 'off', SWF_LOG_LEVEL: 'warn' } },
    ],
  );
  return list;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/**
 * Each variant floods `FASTMON_BENCH_COST_STFS` STFs (default 3,000, `--quick` 800) in a fresh
 * process, `FASTMON_BENCH_COST_ROUNDS` rounds (default 3) with the variants alternating, so a
 * neighbour's load falls on all of them alike; medians. CPU is the consumer process's (all threads).
 */
export async function cost(setup: Setup, withAgent: WithAgent): Promise<Row[]> {
  const count = Number(process.env.FASTMON_BENCH_COST_STFS) || (quick ? 800 : 3000);
  const rounds = Number(process.env.FASTMON_BENCH_COST_ROUNDS) || (quick ? 2 : 3);
  const measured = new Map<string, { cpu: number[]; rate: number[] }>();
  for (let round = 0; round < rounds; round++) {
    for (const [label, kind] of variants()) {
      const key = `cost: ${label}`;
      const rate = await withAgent(kind, key, (a) => flood(setup, count, key, a));
      const m = measured.get(label) ?? { cpu: [], rate: [] };
      m.cpu.push(cpuShares[key]?.agent ?? Number.NaN);
      m.rate.push(rate);
      measured.set(label, m);
      delete cpuShares[key];
    }
  }
  const raw = measured.get('raw consumer') as { cpu: number[]; rate: number[] };
  const rows: Row[] = [];
  for (const [label, m] of measured) {
    rows.push(
      {
        name: `CPU per STF, ${label} (${count} STFs, median of ${rounds} alternating rounds)`,
        value: median(m.cpu),
        unit: 'ms',
        // Every round's figure, so the spread is seen beside the median.
        baseline: `raw consumer; rounds ${m.cpu.map((x) => x.toFixed(2)).join(', ')}`,
        ratio: median(m.cpu) / median(raw.cpu),
      },
      {
        name: `  throughput, ${label}`,
        value: median(m.rate),
        unit: 'STFs/s',
        baseline: `raw consumer (ceiling); rounds ${m.rate.map((x) => x.toFixed(0)).join(', ')}`,
        ratio: median(m.rate) / median(raw.rate),
      },
    );
  }
  return rows;
}
