// `npm run bench`: micro-benchmarks and an end-to-end replay, each beside a baseline from the same run.

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Bench } from 'tinybench';
import { Agent } from '../src/agent/agent.js';
import { loadConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log/logger.js';
import { decodeMessage } from '../src/messaging/codec.js';
import { sampleStf } from '../workers/sampler.js';
import { readStfHeader } from '../workers/stf-reader.js';

const quick = process.argv.includes('--quick');
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

interface Row {
  name: string;
  opsPerSec: number;
  baseline: string;
  ratio: number;
}

async function micro(): Promise<Row[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-bench-'));
  const stf = path.join(dir, 'swf.101993.000001.stf');
  writeFileSync(
    stf,
    JSON.stringify({ run_id: 101993, state: 'run', substate: 'physics', filename: 'swf.101993.000001.stf' }),
  );
  const body = readFileSync(path.join(root, 'examples/run-100001/messages.jsonl'), 'utf8').split(
    '\n',
  )[3] as string;
  const settings = { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 };
  const bench = new Bench({ time: quick ? 300 : 1500 });
  bench
    .add('JSON.parse of stf_ready (baseline)', () => {
      JSON.parse(body);
    })
    .add('decode + validate stf_ready', () => {
      decodeMessage(body);
    })
    .add('sample 7 ranges of a 1000-TF STF', () => {
      sampleStf({
        seed: 's',
        runId: '101993',
        stfFilename: 'swf.101993.000001.stf',
        tfCount: 1000,
        stfSizeBytes: 2e9,
        settings,
      });
    })
    .add('readFile of the STF (baseline)', async () => {
      await readFile(stf);
    })
    .add('STF header read', async () => {
      await readStfHeader(stf);
    });
  await bench.run();
  const hz = (name: string) =>
    bench.tasks.find((t) => t.name === name)?.result?.throughput?.mean ?? Number.NaN;
  const row = (name: string, baseline: string): Row => ({
    name,
    opsPerSec: hz(name),
    baseline,
    ratio: hz(name) / hz(baseline),
  });
  return [
    row('decode + validate stf_ready', 'JSON.parse of stf_ready (baseline)'),
    row('sample 7 ranges of a 1000-TF STF', 'JSON.parse of stf_ready (baseline)'),
    row('STF header read', 'readFile of the STF (baseline)'),
  ];
}

/** The whole agent path without broker or monitor: replayed stf_ready → worker → catalog → stream. */
async function endToEnd(stfs: number, inline: boolean, workers: number): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-bench-e2e-'));
  const data = path.join(dir, 'data');
  mkdirSync(data);
  for (let i = 1; i <= stfs; i++) {
    writeFileSync(
      path.join(data, `swf.101993.${String(i).padStart(6, '0')}.stf`),
      JSON.stringify({ run_id: 101993 }),
    );
  }
  const { config } = loadConfig({
    env: {},
    flags: new Map<string, string | string[]>([
      ['agent.catalog', path.join(dir, 'catalog.jsonl')],
      ['agent.data_roots', [data]],
      ['agent.http_port', '-1'],
      ['agent.workers', String(workers)],
    ]),
  });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const agent = new Agent({ config, logger: silentLogger(), stdout: sink, consume: false, inline });
  await agent.start();
  const started = performance.now();
  const work: Promise<void>[] = [];
  for (let i = 1; i <= stfs; i++) {
    const filename = `swf.101993.${String(i).padStart(6, '0')}.stf`;
    work.push(agent.handleMessage(JSON.stringify({ msg_type: 'stf_ready', run_id: '101993', filename })));
  }
  await Promise.all(work);
  const seconds = (performance.now() - started) / 1000;
  await agent.stop('bench');
  return stfs / seconds;
}

async function main(): Promise<void> {
  const rows = await micro();
  const stfs = quick ? 500 : 3000;
  const inline = await endToEnd(stfs, true, 1);
  const pool1 = await endToEnd(stfs, false, 1);
  const pool2 = await endToEnd(stfs, false, 2);
  rows.push(
    { name: `end to end, inline (no pool), ${stfs} STFs`, opsPerSec: inline, baseline: '-', ratio: 1 },
    { name: 'end to end, pool of 1 worker', opsPerSec: pool1, baseline: 'inline', ratio: pool1 / inline },
    { name: 'end to end, pool of 2 workers', opsPerSec: pool2, baseline: 'inline', ratio: pool2 / inline },
  );
  console.log('\nswf-fastmon bench (ops/s; ratio = ops/s over the baseline of the same run)\n');
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(44)} ${r.opsPerSec.toFixed(0).padStart(10)}  ${r.ratio.toFixed(2).padStart(6)}x  vs ${r.baseline}`,
    );
  }
  const results = path.join(root, 'bench/results');
  mkdirSync(results, { recursive: true });
  const out = path.join(results, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model, quick, rows }, null, 2)}\n`,
  );
  console.log(`\nwritten ${path.relative(process.cwd(), out)}`);
}

await main();
