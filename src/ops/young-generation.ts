// V8's young generation while the CLI loads its modules, set by the process itself: imported first by the CLI.

import v8 from 'node:v8';

/**
 * V8 starts the young generation at 1 MB per semi-space and doubles it, up to 16 MB, whenever
 * many objects survive a scavenge. Loading the agent's modules is such a phase (zod, undici and
 * prom-client build their tables then, and all of it survives), so every command used to start
 * with 16 MB semi-spaces that an idle agent never needed, and kept them resident: 5-10 MB of RSS
 * (BENCHMARKS.md, "Memory"). `--max-semi-space-size` is read once, when the heap is made, so it
 * needs NODE_OPTIONS; the growth factor is read at every growth, so it can be set from inside.
 * It is 1 (no growth) while the modules load and V8's 2 again once they have: under load a small
 * young generation promotes every request in flight and the old generation grew instead (peak
 * RSS at 200 STFs/s 218 -> 244 MB with growth off for good). An operator's own semi-space flag wins.
 */
const operatorChose = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((arg) =>
  /semi[-_]space/.test(arg),
);

if (!operatorChose) v8.setFlagsFromString('--semi-space-growth-factor=1');

/** Called once the modules are loaded: V8's own growth from then on. */
export function letYoungGenerationGrow(): void {
  if (!operatorChose) v8.setFlagsFromString('--semi-space-growth-factor=2');
}
