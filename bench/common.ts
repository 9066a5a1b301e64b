// What every bench module shares: the result row, the --quick switch, paths and a small STF description.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Row {
  name: string;
  /** Operations (or MB, or files) per second, or the figure named in `unit`. */
  value: number;
  unit: string;
  baseline: string;
  /** value over the baseline's value, both measured in the same run. */
  ratio: number;
}

export const quick = process.argv.includes('--quick');
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

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
