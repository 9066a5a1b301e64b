// The Piscina pool that runs STF tasks off the main thread, and an inline executor as its baseline.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
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

export function createPool(options: { workers: number; maxQueue?: number }): StfExecutor {
  const pool = new Piscina<StfTask, StfTaskResult>({
    filename: workerFile('stf-task'),
    minThreads: options.workers,
    maxThreads: options.workers,
    // Workers read and write files with plain system calls (workers/file-access.ts): a task
    // waits only on the syncs of its samples. The depth is for the hand-off: a worker that ran
    // out of tasks sleeps until the main thread posts another, and at 4 it slept a quarter of
    // the time on header reads; at 16 one worker reads 1.3x more headers per second.
    concurrentTasksPerWorker: 16,
    idleTimeout: 60_000,
  });
  return counted(
    (task) => pool.run(task),
    () => pool.destroy(),
  );
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
