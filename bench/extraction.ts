// TF extraction throughput beside a plain read of the same byte ranges.

import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { createPool } from '../src/scheduler/pool.js';
import type { TfEntry } from '../workers/stf-format.js';
import { readStf } from '../workers/stf-reader.js';
import runStfTask from '../workers/stf-task.js';
import { quick, type Row, scratch, stfTask, writeNoiseStf } from './common.js';

/**
 * Extraction MB/s (sampled bytes read, verified, written and checksummed) beside a plain read of
 * the same byte ranges in 1 MiB chunks, both from the page cache: on the main thread (the
 * threadpool's asynchronous I/O) and in a pool worker (direct I/O), one STF at a time.
 */
export async function extraction(): Promise<Row[]> {
  const dir = scratch('extract');
  try {
    return await measure(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(dir: string): Promise<Row[]> {
  const stf = path.join(dir, 'swf.101993.000001.stf');
  const tfBytes = quick ? 50_000 : 200_000;
  await writeNoiseStf(stf, tfBytes);
  const task = stfTask(dir, path.basename(stf), path.join(dir, 'out'));
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
  const pool = createPool({ workers: 1 });
  let workerMBs: number;
  try {
    await pool.run(task); // worker start and module load
    started = performance.now();
    for (let r = 0; r < rounds; r++) await pool.run(task);
    workerMBs = (sampled * rounds) / 1e6 / ((performance.now() - started) / 1000);
  } finally {
    await pool.close();
  }
  return [
    {
      name: `plain read of the sampled ranges (${(sampled / 1e6).toFixed(0)} MB/STF)`,
      value: readMBs,
      unit: 'MB/s',
      baseline: '-',
      ratio: 1,
    },
    {
      name: 'TF extraction to sample files',
      value: extractMBs,
      unit: 'MB/s',
      baseline: 'plain read',
      ratio: extractMBs / readMBs,
    },
    {
      name: 'TF extraction to sample files, in a pool worker',
      value: workerMBs,
      unit: 'MB/s',
      baseline: 'plain read',
      ratio: workerMBs / readMBs,
    },
  ];
}
