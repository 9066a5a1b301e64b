import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createPool } from '../src/scheduler/pool.js';
import { locateStf, mayReadFile } from '../workers/paths.js';
import runStfTask, { type StfTask } from '../workers/stf-task.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-pool-'));
  made.push(d);
  return d;
}

function task(overrides: Partial<StfTask>): StfTask {
  return {
    seed: 's',
    runId: '100001',
    stfFilename: 'swf.100001.000001.stf',
    fileUrl: null,
    filename: 'swf.100001.000001.stf',
    messageSizeBytes: null,
    messageTfCount: null,
    messageChecksum: null,
    dataRoots: [],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    outputDir: null,
    stfChecksum: false,
    ...overrides,
  };
}

describe('the worker pool', () => {
  it('starts no worker thread for STFs it cannot read (the testbed: no data roots, remote URLs)', async () => {
    const pool = createPool({ workers: 2 });
    try {
      const unreadable = [
        task({}),
        task({ dataRoots: [dir()], fileUrl: 'root://eic.example/store/swf.100001.000001.stf' }),
        task({ dataRoots: [dir()], filename: null, stfFilename: 'per-run' }),
      ];
      for (const t of unreadable) {
        const result = await pool.run(t);
        expect(result.ok).toBe(true);
        // The same samples as the task module computes anywhere else.
        expect(result).toEqual(await runStfTask(t));
      }
      expect(pool.threads).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('starts its workers at the first STF that may be on disk, and reads it there', async () => {
    const root = dir();
    writeFileSync(
      path.join(root, 'swf.100001.000001.stf'),
      JSON.stringify({
        run_id: 100001,
        state: 'run',
        substate: 'physics',
        filename: 'swf.100001.000001.stf',
      }),
    );
    const pool = createPool({ workers: 2 });
    try {
      expect(pool.threads).toBe(0);
      const found = await pool.run(task({ dataRoots: [root] }));
      expect(found.ok && found.path).toBe(path.join(root, 'swf.100001.000001.stf'));
      expect(pool.threads).toBe(2);
      // A missing file under a root is looked for in the pool too, and said so.
      const missing = await pool.run(task({ dataRoots: [root], filename: 'swf.100001.000002.stf' }));
      expect(missing.ok && missing.warning?.code).toBe('STF_NOT_FOUND');
    } finally {
      await pool.close();
    }
  });

  it('reads a small STF a scan found on a local file system here, with the same result as a worker, and keeps the roots', async () => {
    const root = dir();
    const outside = dir();
    const body = JSON.stringify({ run_id: 100001, state: 'run', substate: 'physics', tf_count: 120 });
    writeFileSync(path.join(root, 'swf.100001.000001.stf'), body);
    writeFileSync(path.join(outside, 'swf.100001.000003.stf'), body);
    symlinkSync(path.join(outside, 'swf.100001.000003.stf'), path.join(root, 'swf.100001.000003.stf'));
    const small = { sizeBytes: body.length, local: true };
    const inline = createPool({ workers: 2 });
    const pooled = createPool({ workers: 2 });
    try {
      const here = await inline.run(task({ dataRoots: [root] }), small);
      expect(here.ok && here.header?.tfCount).toBe(120);
      expect(here).toEqual(await pooled.run(task({ dataRoots: [root] })));
      // A link out of the data roots is refused as it is in a worker.
      const escaped = task({
        dataRoots: [root],
        filename: 'swf.100001.000003.stf',
        stfFilename: 'swf.100001.000003.stf',
      });
      const refused = await inline.run(escaped, small);
      expect(!refused.ok && refused.error.code).toBe('PATH_OUTSIDE_ROOTS');
      expect(refused).toEqual(await pooled.run(escaped));
      expect(inline.threads).toBe(0);
      // Larger than one head read, on another file system, or with samples to write: a worker reads it.
      await inline.run(task({ dataRoots: [root] }), { sizeBytes: body.length, local: false });
      expect(inline.threads).toBe(2);
    } finally {
      await inline.close();
      await pooled.close();
    }
  });

  it('judges "may read a file" as locating the STF does: never false where a lookup could happen', async () => {
    const root = dir();
    await fc.assert(
      fc.asyncProperty(
        fc.option(
          fc.constantFrom(
            'file:///nowhere/x.stf',
            `file://${root}/x.stf`,
            'root://host/x.stf',
            'https://h/x',
          ),
        ),
        fc.option(fc.constantFrom('x.stf', 'sub/y.stf', '/abs/z.stf')),
        fc.boolean(),
        async (fileUrl, filename, withRoots) => {
          const ref = { fileUrl, filename };
          const roots = withRoots ? [root] : [];
          if (mayReadFile(ref, roots)) return;
          // Nothing to look up: no location and no "not found" warning, without touching the disk.
          await expect(locateStf(ref, roots)).resolves.toEqual({ location: null });
        },
      ),
    );
  });
});
