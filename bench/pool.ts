// Worker pool scaling: header reads and TF extraction through the inline executor and pools of 1 and 2 workers.

import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { stfFilename } from '../src/gen/plan.js';
import { createInlineExecutor, createPool, type StfExecutor } from '../src/scheduler/pool.js';
import type { StfTask, StfTaskSuccess } from '../workers/stf-task.js';
import { writeStf } from '../workers/stf-writer.js';
import { quick, type Row, scratch, stfDescription, stfTask, writeNoiseStf } from './common.js';

/** The agent's default `max_in_flight`: how many STFs the scheduler hands the executor at once. */
const IN_FLIGHT = 64;

interface Workload {
  /** Row name prefix; `detail` goes on the first row only. */
  label: string;
  detail: string;
  /** tasks/s, or MB/s of what `bytes` counts. */
  unit: 'tasks/s' | 'MB/s';
  /** Bytes a task read (header reads) or wrote (extraction: its sample files). */
  bytes(result: StfTaskSuccess): number;
  /** Tasks run before timing (worker start, module load, JIT), then tasks timed, per executor. */
  warmUp: number;
  count: number;
  task(serial: number): StfTask;
  /** Between executors, so that each starts from the same state. */
  reset(): void;
}

/**
 * Each workload runs with IN_FLIGHT tasks outstanding, as the scheduler drives the executor,
 * through the inline executor and pools of 1 and 2 workers. Inputs stay in the page cache, so
 * this measures the executors (CPU, thread hand-offs, syncs), not the disk's reads.
 */
export async function poolScaling(): Promise<Row[]> {
  const dir = scratch('pool');
  try {
    const rows: Row[] = [];
    for (const workload of [await headerReads(dir), await extractions(dir)]) {
      const inline = await measure(createInlineExecutor(), workload);
      const pool1 = await measure(createPool({ workers: 1 }), workload);
      const pool2 = await measure(createPool({ workers: 2 }), workload);
      const value = (r: Rate) => (workload.unit === 'MB/s' ? r.bytesPerS / 1e6 : r.tasksPerS);
      const row = (name: string, r: Rate, baseline: string, over: Rate): Row => ({
        name: `${workload.label}, ${name}`,
        value: value(r),
        unit: workload.unit,
        baseline,
        ratio: value(r) / value(over),
      });
      rows.push(
        { ...row('inline', inline, '-', inline), name: `${workload.label} (${workload.detail}), inline` },
        row('pool of 1 worker', pool1, 'inline', inline),
        row('pool of 2 workers', pool2, 'inline', inline),
        {
          name: `${workload.label}, pool of 2 workers over 1`,
          value: value(pool2) / value(pool1),
          unit: 'x',
          baseline: 'pool of 1 worker',
          ratio: value(pool2) / value(pool1),
        },
      );
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Many distinct 1000-TF binary STFs (copies, each with its own pages): header and index reads only. */
async function headerReads(dir: string): Promise<Workload> {
  const data = path.join(dir, 'headers');
  mkdirSync(data);
  const files = quick ? 128 : 1024;
  const model = path.join(dir, 'model.stf');
  await writeStf(model, stfDescription(1000, 100), (_tf, _o, into) => {
    into.fill(7);
  });
  const bytes = readFileSync(model);
  const names = Array.from({ length: files }, (_, i) => stfFilename(101993, i));
  for (const name of names) writeFileSync(path.join(data, name), bytes);
  return {
    label: 'pool: STF header + 1000-TF index reads',
    detail: `${files} STFs, 64 KiB read/task`,
    unit: 'tasks/s',
    bytes: () => Math.min(bytes.length, 64 * 1024),
    warmUp: IN_FLIGHT,
    count: quick ? 600 : 20_000,
    task: (serial) => stfTask(data, names[serial % files] as string, null, '101993'),
    reset: () => {},
  };
}

/**
 * One STF of random TFs, hard-linked under many names: each name samples other ranges, and each
 * pass over the names writes under its own run directory, so sample names never repeat, as in
 * production.
 */
async function extractions(dir: string): Promise<Workload> {
  const data = path.join(dir, 'stfs');
  const out = path.join(dir, 'out');
  mkdirSync(data);
  const tfBytes = quick ? 10_000 : 20_000;
  const model = path.join(data, stfFilename(101993, 0));
  await writeNoiseStf(model, tfBytes);
  const names = Array.from({ length: IN_FLIGHT * 2 }, (_, i) => stfFilename(101993, i));
  for (const name of names.slice(1)) linkSync(model, path.join(data, name));
  // tf_size_fraction 0.15 of 1000 TFs, about.
  const bytesPerTask = 0.15 * 1000 * tfBytes;
  const warmUp = quick ? 4 : 32;
  const count = quick ? 24 : 200;
  pretouch(path.join(dir, 'pretouch'), (warmUp + count) * bytesPerTask);
  return {
    label: 'pool: TF extraction',
    detail: `~${(bytesPerTask / 1e6).toFixed(1)} MB in 7 files/task`,
    unit: 'MB/s',
    bytes: (result) => result.samples.reduce((sum, s) => sum + (s.fileSizeBytes ?? 0), 0),
    warmUp,
    count,
    task: (serial) =>
      stfTask(data, names[serial % names.length] as string, out, String(Math.floor(serial / names.length))),
    reset: () => rmSync(out, { recursive: true, force: true }),
  };
}

/**
 * Writes and deletes as many bytes as one executor will extract. In a VM whose memory is
 * allocated lazily (this Firecracker guest), the first write into a never-used page costs ten
 * times a write into a recycled one (300 MB/s against 3 GB/s): without this, whichever executor
 * ran first would pay for it. The samples of each executor are deleted before the next runs.
 */
function pretouch(dir: string, bytes: number): void {
  mkdirSync(dir);
  const chunk = Buffer.alloc(1 << 20, 1);
  for (let written = 0, n = 0; written < bytes; n++) {
    const fd = openSync(path.join(dir, String(n)), 'w');
    for (let k = 0; k < 16; k++, written += chunk.length)
      writeSync(fd, chunk, 0, chunk.length, k * chunk.length);
    closeSync(fd);
  }
  rmSync(dir, { recursive: true });
}

interface Rate {
  tasksPerS: number;
  bytesPerS: number;
}

/** Rates from the first timed submission to the last result, after the warm-up. */
async function measure(executor: StfExecutor, workload: Workload): Promise<Rate> {
  workload.reset();
  try {
    await runAll(executor, workload, 0, workload.warmUp);
    const started = performance.now();
    const bytes = await runAll(executor, workload, workload.warmUp, workload.count);
    const seconds = (performance.now() - started) / 1000;
    return { tasksPerS: workload.count / seconds, bytesPerS: bytes / seconds };
  } finally {
    await executor.close();
    workload.reset();
  }
}

/** Runs tasks `first…first+count-1`, keeping up to IN_FLIGHT outstanding; returns the bytes they counted. */
async function runAll(
  executor: StfExecutor,
  workload: Workload,
  first: number,
  count: number,
): Promise<number> {
  let next = first;
  let bytes = 0;
  const end = first + count;
  const lane = async () => {
    while (next < end) {
      const result = await executor.run(workload.task(next++));
      if (!result.ok) throw new Error(result.error.message);
      bytes += workload.bytes(result);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, lane));
  return bytes;
}
