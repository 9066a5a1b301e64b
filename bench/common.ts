// What every bench module shares: the result row, the --quick switch, paths and a small STF description.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StfTask } from '../workers/stf-task.js';
import { writeStf } from '../workers/stf-writer.js';

export interface Row {
  name: string;
  /** Operations (or MB, or files) per second, or the figure named in `unit`. */
  value: number;
  unit: string;
  baseline: string;
  /** value over the baseline's value, both measured in the same run. */
  ratio: number;
  /** The broker the row was measured through (end-to-end scenarios only). */
  broker?: string;
}

export const quick = process.argv.includes('--quick');
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** FASTMON_BENCH_TRACE: where latency traces and the agents' logs are kept (see BENCHMARKS.md). */
export const traceDir = process.env.FASTMON_BENCH_TRACE;

/** The p-th percentile of ascending `sorted` (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** A label as a file name. */
export function slug(label: string): string {
  return label.replace(/\W+/g, '-');
}

export function scratch(label: string, base = tmpdir()): string {
  return mkdtempSync(path.join(base, `fastmon-bench-${label}-`));
}

export function stfDescription(tfs: number, tfBytes: number) {
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

/** The task the scheduler would send for an STF under `root`, with the testbed's sampling settings. */
export function stfTask(root: string, filename: string, outputDir: string | null, runId = '101993'): StfTask {
  return {
    seed: 's',
    runId,
    stfFilename: filename,
    fileUrl: null,
    filename,
    messageSizeBytes: null,
    messageTfCount: null,
    messageChecksum: null,
    dataRoots: [root],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    outputDir,
    stfChecksum: false,
  };
}

/** A 1000-TF binary STF of incompressible bytes (xorshift), as extraction benches read and copy. */
export async function writeNoiseStf(file: string, tfBytes: number): Promise<void> {
  let seed = 1;
  await writeStf(file, stfDescription(1000, tfBytes), (_tf, _o, into) => {
    for (let i = 0; i < into.length; i += 4) {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      into.writeInt32LE(seed | 0, i);
    }
  });
}
