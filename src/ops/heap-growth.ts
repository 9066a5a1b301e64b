// How far V8 lets the main thread's heap grow past what survived its last full collection, in scan and watch.

import v8 from 'node:v8';

/**
 * By default V8 sets the old generation's next limit at 1.1 to 4 times what survived the last full
 * collection, the more the faster the program allocates. A scan allocates fast (a few KB of
 * short-lived objects per file), so the limit kept being raised and the heap's pages stayed
 * resident: over 100,000 JSON STFs the main thread's heap went from 107 to 168 MB while what was
 * live stayed at 30-140 MB. With a fixed factor of 1.6 the process's peak RSS over 50,000 files
 * was 168-172 MB instead of 235-236 MB, for the same CPU per file (202-232 against 204-239 µs, three
 * pairs alternated; BENCHMARKS.md, "Scan: where the CPU goes"). The factor is read at every full
 * collection, so it can be set from inside the process. An operator's own flag wins.
 */
export const SCAN_HEAP_GROWING_PERCENT = 60;

const operatorChose = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((arg) =>
  /heap[-_]growing[-_]percent/.test(arg),
);

/** Fixes the heap's growth for a scan; returns how to give V8 its own dynamic factor back. */
export function limitHeapGrowth(percent = SCAN_HEAP_GROWING_PERCENT): () => void {
  if (operatorChose) return () => {};
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return () => v8.setFlagsFromString('--heap-growing-percent=0');
}
