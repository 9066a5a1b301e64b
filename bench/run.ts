// `npm run bench`: micro-benchmarks and an end-to-end replay, each beside a baseline from the same run.

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Bench } from 'tinybench';
import { Agent } from '../src/agent/agent.js';
import { loadConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log/logger.js';
import { decodeMessage } from '../src/messaging/codec.js';
import { sampleStf } from '../workers/sampler.js';
import type { TfEntry } from '../workers/stf-format.js';
import { readStf, readStfHeader } from '../workers/stf-reader.js';
import runStfTask from '../workers/stf-task.js';
import { writeStf } from '../workers/stf-writer.js';

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
  const binary = path.join(dir, 'swf.101993.000002.stf');
  await writeStf(binary, stfDescription(1000, 1000), (_tf, _o, into) => {
    into.fill(7);
  });
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
    })
    .add('read of the first 64 KiB of a binary STF (baseline)', async () => {
      const handle = await open(binary, 'r');
      await handle.read(Buffer.alloc(64 * 1024), 0, 64 * 1024, 0);
      await handle.close();
    })
    .add('binary STF header + 1000-TF index read', async () => {
      await readStfHeader(binary);
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
    row('binary STF header + 1000-TF index read', 'read of the first 64 KiB of a binary STF (baseline)'),
  ];
}

function stfDescription(tfs: number, tfBytes: number) {
  return {
    runNumber: 101993n,
    stfSequence: 1n,
    state: 'run',
    substate: 'physics',
    startNs: 0n,
    endNs: 0n,
    tfLengths: Array.from({ length: tfs }, () => tfBytes),
  };
}

/**
 * Extraction MB/s (sampled bytes read, verified, written and checksummed) beside a plain read of
 * the same byte ranges in 1 MiB chunks, both from the page cache.
 */
async function extraction(): Promise<Row[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-bench-extract-'));
  const stf = path.join(dir, 'swf.101993.000001.stf');
  const tfBytes = quick ? 50_000 : 200_000;
  let seed = 1;
  await writeStf(stf, stfDescription(1000, tfBytes), (_tf, _o, into) => {
    for (let i = 0; i < into.length; i += 4) {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      into.writeInt32LE(seed | 0, i);
    }
  });
  const task = {
    seed: 's',
    runId: '101993',
    stfFilename: path.basename(stf),
    fileUrl: null,
    filename: path.basename(stf),
    messageSizeBytes: null,
    messageTfCount: null,
    messageChecksum: null,
    dataRoots: [dir],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    outputDir: path.join(dir, 'out'),
    stfChecksum: false,
  };
  const rounds = quick ? 3 : 10;
  const first = await runStfTask(task);
  if (!first.ok) throw new Error(first.error.message);
  const index = (await readStf(stf)).tfIndex ?? [];
  const spans = first.samples.map((s) => {
    const a = index[s.tfFirst] as TfEntry;
    const b = index[s.tfLast] as TfEntry;
    return [a.offset, b.offset + b.length] as const;
  });
  const sampled = first.samples.reduce((sum, s) => sum + s.tfCount * tfBytes, 0);
  let started = performance.now();
  for (let r = 0; r < rounds; r++) await runStfTask(task);
  const extractMBs = (sampled * rounds) / 1e6 / ((performance.now() - started) / 1000);
  const chunk = Buffer.alloc(1 << 20);
  started = performance.now();
  for (let r = 0; r < rounds; r++) {
    const handle = await open(stf, 'r');
    for (const [begin, end] of spans) {
      for (let at = begin; at < end; at += chunk.length)
        await handle.read(chunk, 0, Math.min(chunk.length, end - at), at);
    }
    await handle.close();
  }
  const readMBs = (sampled * rounds) / 1e6 / ((performance.now() - started) / 1000);
  return [
    {
      name: `plain read of the sampled ranges, MB/s (${(sampled / 1e6).toFixed(0)} MB/STF)`,
      opsPerSec: readMBs,
      baseline: '-',
      ratio: 1,
    },
    {
      name: 'TF extraction to sample files, MB/s',
      opsPerSec: extractMBs,
      baseline: 'plain read',
      ratio: extractMBs / readMBs,
    },
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
  rows.push(...(await extraction()));
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
