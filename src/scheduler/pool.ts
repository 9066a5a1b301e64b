// The Piscina pool that runs STF tasks off the main thread, and an inline executor as its baseline.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import { mayReadFile } from '../../workers/paths.js';
import runStfTask, { type StfTask, type StfTaskResult } from '../../workers/stf-task.js';

export interface StfExecutor {
  run(task: StfTask): Promise<StfTaskResult>;
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
      });
      return live;
    });
    return pool;
  };
  const executor = counted(
    (task) => (mayReadFile(task, task.dataRoots) ? started().then((p) => p.run(task)) : runStfTask(task)),
    async () => {
      await (await pool)?.destroy();
    },
  );
  return Object.defineProperty(executor, 'threads', {
    get: () => live?.threads.length ?? 0,
    enumerable: true,
  }) as PoolExecutor;
}

/** Runs tasks on the main thread: the no-pool baseline of `npm run bench`. */
export function createInlineExecutor(): StfExecutor {
  return counted(runStfTask, async () => {});
}

function counted(run: (task: StfTask) => Promise<StfTaskResult>, close: () => Promise<void>): StfExecutor {
  let pending = 0;
  return {
    async run(task) {
      pending++;
      try {
        return await run(task);
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
