// `npm run bench`: every scenario, a table on stdout and JSON in bench/results/ (`--quick`: under a minute).

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { BROKER_PARTS, broker, brokerDetails } from './broker.js';
import { bulk } from './bulk.js';
import { quick, type Row, root } from './common.js';
import { extraction } from './extraction.js';
import { cpuShares } from './load.js';
import { micro } from './micro.js';
import { pipeline } from './pipeline.js';
import { poolScaling } from './pool.js';
import { postgres } from './postgres.js';
import { scan } from './scan.js';

async function main(): Promise<void> {
  const rows: Row[] = [];
  // FASTMON_BENCH_ONLY names scenarios (micro, extraction, poolScaling, pipeline, scan, bulk,
  // broker, postgres) or parts of the broker scenario (ceiling, throughput, latency, memory).
  const only = process.env.FASTMON_BENCH_ONLY?.split(',').map((name) => name.trim());
  const scenarios = [micro, extraction, poolScaling, pipeline, scan, bulk, broker, postgres].filter(
    (scenario) =>
      !only ||
      only.includes(scenario.name) ||
      (scenario === broker && only.some((name) => BROKER_PARTS.includes(name))),
  );
  if (scenarios.length === 0) throw new Error(`FASTMON_BENCH_ONLY=${only?.join(',')} names no scenario`);
  for (const scenario of scenarios) {
    const started = performance.now();
    rows.push(...(await scenario()));
    console.error(`bench: ${scenario.name} took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  console.log('\nswf-fastmon bench (ratio = value over the baseline measured in the same run)\n');
  for (const r of rows) {
    const value = r.value >= 100 ? r.value.toFixed(0) : r.value.toFixed(1);
    console.log(
      `${r.name.padEnd(66)} ${value.padStart(10)} ${r.unit.padEnd(8)} ${r.ratio.toFixed(2).padStart(6)}x  vs ${r.baseline}`,
    );
  }
  const results = path.join(root, 'bench/results');
  mkdirSync(results, { recursive: true });
  const out = path.join(results, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model };
  writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), ...machine, quick, rows, cpuShares, ...brokerDetails }, null, 2)}\n`,
  );
  console.log(`\nwritten ${path.relative(process.cwd(), out)}`);
}

await main();
