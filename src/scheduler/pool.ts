// The Piscina pool that runs STF tasks off the main thread, and an inline executor as its baseline.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import { directAccess } from '../../workers/file-access.js';
import { mayReadFile } from '../../workers/paths.js';
import { HEAD_BYTES } from '../../workers/stf-reader.js';
import runStfTask, { type StfTask, type StfTaskResult } from '../../workers/stf-task.js';

/** What the caller's stat of the STF found (a scan stats every file it lists). */
export interface FoundFile {
  sizeBytes: number;
  /** On a local file system (src/inputs/walk.ts, LOCAL_FS): reading it never leaves the machine. */
  local: boolean;
}

export interface StfExecutor {
  run(task: StfTask, found?: FoundFile): Promise<StfTaskResult>;
  /** Tasks queued or running. */
  readonly pending: number;
  close(): Promise<void>;
}

/**
 * Compiled task modules live in dist/workers. When this file runs from source (vitest), the
 * workers still run the compiled JavaScript: worker threads cannot load TypeScript on Node 20,
 * which is why `npm test` builds first.
 */
export function workerFile(name: string): string {
  const here = fileURLToPath(import.meta.url);
  const compiled = here.endsWith('.ts')
    ? path.resolve(path.dirname(here), '../../dist/workers', `${name}.js`)
    : path.resolve(path.dirname(here), '../../workers', `${name}.js`);
  if (!existsSync(compiled)) {
    throw new Error(`worker module ${compiled} is missing: run "npm run build" first`);
  }
  return compiled;
}

/**
 * A worker's live data is the tasks in hand (16 at most) and a TF index each; without limits V8 let
 * each isolate's heap grow with the rate it allocated at. Pool busy with 50,000 small STFs (JSON with
 * agent.output_dir set, so each goes to a worker): peak RSS 214-218 against 262-266 MB, the same CPU
 * per file (BENCHMARKS.md, "Scan: where the CPU goes"). Sample buffers are outside the V8 heap.
 */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 };

/** The pool executor; `threads` is how many worker threads exist now (0 until a task needs a file). */
export type PoolExecutor = StfExecutor & { readonly threads: number };

/**
 * A Piscina pool of `workers` threads, started by the first task that may read a file. A task
 * that cannot touch the disk (no data roots, a remote file_url, no filename: the testbed's
 * stf_ready) only samples ranges from the message, a few microseconds, so it runs on the main
 * thread: handing it to a worker cost more than the work, and an agent that never reads a file
 * keeps no worker isolates (about 8 MB of RSS each; BENCHMARKS.md, "Memory").
 */
export function createPool(options: { workers: number; maxQueue?: number }): PoolExecutor {
  // Fails now, not at the first file, when the compiled worker module is missing.
  const filename = workerFile('stf-task');
  // piscina itself is loaded with the pool, not with the agent: an agent that never reads a file
  // (the testbed's) does not hold the module either (7.6 MB of RSS loaded alone; BENCHMARKS.md,
  // "The agent's own footprint").
  let live: Piscina<StfTask, StfTaskResult> | null = null;
  let pool: Promise<Piscina<StfTask, StfTaskResult>> | null = null;
  const started = () => {
    pool ??= import('piscina').then(({ Piscina }) => {
      live = new Piscina<StfTask, StfTaskResult>({
        filename,
        minThreads: options.workers,
        maxThreads: options.workers,
        // Workers read and write files with plain system calls (workers/file-access.ts): a task
        // waits only on the syncs of its samples. The depth is for the hand-off: a worker that ran
        // out of tasks sleeps until the main thread posts another, and at 4 it slept a quarter of
        // the time on header reads; at 16 one worker reads 1.3x more headers per second.
        concurrentTasksPerWorker: 16,
        idleTimeout: 60_000,
        resourceLimits: WORKER_LIMITS,
      });
      return live;
    });
    return pool;
  };
  const executor = counted(
    (task, found) => {
      if (!mayReadFile(task, task.dataRoots)) return runStfTask(task);
      if (readsInline(task, found)) return runStfTask(task, directAccess);
      return started().then((p) => p.run(task));
    },
    async () => {
      await (await pool)?.destroy();
    },
  );
  return Object.defineProperty(executor, 'threads', {
    get: () => live?.threads.length ?? 0,
    enumerable: true,
  }) as PoolExecutor;
}

/**
 * A small STF on a local file system, with nothing to extract, is read here, with plain system
 * calls: locating and reading it (realpath, stat, open, fstat, one read, close) costs the main
 * thread about what handing the task to a worker and taking its answer back did, and the workers'
 * own share (25-30 µs per file each), their isolates and their garbage go away: a scan of JSON STFs
 * used a quarter less CPU and 70-140 MB less peak RSS (BENCHMARKS.md, "Scan: where the CPU goes"). The
 * testbed's JSON STFs are a few hundred bytes. One read of HEAD_BYTES takes the whole file, so the
 * main thread waits on at most that much page cache or local disk; anything larger, on a network
 * file system, or with samples to write goes to the pool. Results are the same either way: the
 * same task function runs.
 */
function readsInline(task: StfTask, found: FoundFile | undefined): boolean {
  return found?.local === true && found.sizeBytes <= HEAD_BYTES && task.outputDir === null;
}

/** Runs tasks on the main thread: the no-pool baseline of `npm run bench`. */
export function createInlineExecutor(): StfExecutor {
  return counted(
    (task) => runStfTask(task),
    async () => {},
  );
}

function counted(
  run: (task: StfTask, found?: FoundFile) => Promise<StfTaskResult>,
  close: () => Promise<void>,
): StfExecutor {
  let pending = 0;
  return {
    async run(task, found) {
      pending++;
      try {
        return await run(task, found);
      } finally {
        pending--;
      }
    },
    get pending() {
      return pending;
    },
    close,
  };
}
