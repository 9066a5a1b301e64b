import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createPool } from '../src/scheduler/pool.js';
import { files, useFileAccess } from '../workers/file-access.js';
import { adler32, adlerString } from '../workers/stf-format.js';
import runStfTask, { type StfTask } from '../workers/stf-task.js';
import { commitStfs, discardStfs, type StfDescription, stageStf, writeStf } from '../workers/stf-writer.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
// Tests run on the main thread, whose access is the threadpool's; some switch to direct I/O.
afterEach(() => useFileAccess('threadpool'));

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-io-'));
  made.push(d);
  return d;
}

function pattern(tf: number, offset: number, into: Buffer): void {
  for (let i = 0; i < into.length; i++) into[i] = (tf * 131 + offset + i * 7) & 0xff;
}

function description(tfLengths: number[]): StfDescription {
  return {
    runNumber: 101993n,
    stfSequence: 9n,
    state: 'run',
    substate: 'physics',
    startNs: 0n,
    endNs: 0n,
    tfLengths,
  };
}

function task(stf: string, outputDir: string): StfTask {
  return {
    seed: 's',
    runId: '101993',
    stfFilename: path.basename(stf),
    fileUrl: null,
    filename: path.basename(stf),
    messageSizeBytes: null,
    messageTfCount: null,
    messageChecksum: null,
    dataRoots: [path.dirname(stf)],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    outputDir,
    stfChecksum: true,
  };
}

/** An STF whose samples span several 1 MiB chunks, so chunking and the concurrent staging show. */
async function bigStf(d: string): Promise<string> {
  const stf = path.join(d, 'swf.101993.000009.stf');
  await writeStf(stf, description(Array.from({ length: 200 }, (_, i) => 40_000 + i * 37)), pattern);
  return stf;
}

/** Sample name → its bytes, for comparing two extractions of the same STF. */
function sampleFiles(out: string): Map<string, Buffer> {
  const run = path.join(out, '101993');
  return new Map(readdirSync(run).map((name) => [name, readFileSync(path.join(run, name))]));
}

describe('file access of STF tasks', () => {
  it('extracts the same sample files with direct I/O (pool workers) and threadpool I/O (main thread)', async () => {
    const d = dir();
    const stf = await bigStf(d);
    expect(files.mode).toBe('threadpool');
    const viaThreadpool = await runStfTask(task(stf, path.join(d, 'threadpool')));
    useFileAccess('direct');
    const direct = await runStfTask(task(stf, path.join(d, 'direct')));
    expect(viaThreadpool.ok && direct.ok).toBe(true);
    if (!viaThreadpool.ok || !direct.ok) return;
    const strip = (s: { file: string | null }) => ({ ...s, file: path.basename(s.file ?? '') });
    expect(direct.samples.map(strip)).toEqual(viaThreadpool.samples.map(strip));
    expect(direct.stfChecksum).toBe(adlerString(adler32(readFileSync(stf))));
    expect(viaThreadpool.stfChecksum).toBe(direct.stfChecksum);
    const a = sampleFiles(path.join(d, 'threadpool'));
    const b = sampleFiles(path.join(d, 'direct'));
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, bytes] of a) expect(b.get(name)?.equals(bytes)).toBe(true);
    for (const s of direct.samples) {
      expect(s.checksum).toBe(adlerString(adler32(readFileSync(s.file as string))));
    }
  });

  it('extracts in a pool worker exactly what the main thread extracts', async () => {
    const d = dir();
    const stf = await bigStf(d);
    const inline = await runStfTask(task(stf, path.join(d, 'inline')));
    const pool = createPool({ workers: 1 });
    try {
      const pooled = await pool.run(task(stf, path.join(d, 'pooled')));
      expect(pooled.ok && inline.ok).toBe(true);
      if (!pooled.ok || !inline.ok) return;
      expect(pooled.samples.map((s) => s.checksum)).toEqual(inline.samples.map((s) => s.checksum));
      expect(pooled.samples.every((s) => s.file?.startsWith(path.join(d, 'pooled', '101993')))).toBe(true);
      expect(pooled.stfChecksum).toBe(inline.stfChecksum);
    } finally {
      await pool.close();
    }
  });

  it('shows a staged file under its name only once committed, and leaves nothing of a discarded one', async () => {
    for (const mode of ['threadpool', 'direct'] as const) {
      useFileAccess(mode);
      const d = dir();
      const kept = path.join(d, 'kept.tf');
      const dropped = path.join(d, 'dropped.tf');
      const staged = await stageStf(kept, description([1000, 2000]), pattern);
      const other = await stageStf(dropped, description([500]), pattern);
      expect(existsSync(kept)).toBe(false);
      expect(readdirSync(d).sort()).toEqual([path.basename(other.temp), path.basename(staged.temp)].sort());
      await discardStfs([other]);
      const [written] = await commitStfs([staged]);
      expect(readdirSync(d)).toEqual(['kept.tf']);
      const bytes = readFileSync(kept);
      expect(written).toEqual({ path: kept, sizeBytes: bytes.length, adler32: adler32(bytes) });
    }
  });
});
