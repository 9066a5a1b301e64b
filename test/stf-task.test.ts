import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import runStfTask, { type StfTask } from '../workers/stf-task.js';

let root: string;
let outside: string;

beforeAll(() => {
  const top = mkdtempSync(path.join(tmpdir(), 'fastmon-task-'));
  root = path.join(top, 'data');
  outside = path.join(top, 'outside');
  mkdirSync(path.join(root, 'run1'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(
    path.join(root, 'swf.101993.000001.stf'),
    JSON.stringify({ run_id: 101993, state: 'run', substate: 'physics' }),
  );
  writeFileSync(
    path.join(root, 'run1', 'swf.101993.000002.stf'),
    JSON.stringify({ run_id: 101993, tf_count: 500 }),
  );
  writeFileSync(path.join(root, 'empty.stf'), '');
  writeFileSync(path.join(root, 'corrupt.stf'), '{"run_id": 101993, "state": ');
  writeFileSync(path.join(root, 'binary.stf'), Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]));
  writeFileSync(path.join(outside, 'secret.stf'), '{"run_id": 1}');
  symlinkSync(path.join(outside, 'secret.stf'), path.join(root, 'link-out.stf'));
  symlinkSync(outside, path.join(root, 'dir-out'));
});

function task(overrides: Partial<StfTask>): StfTask {
  return {
    seed: 's',
    runId: '101993',
    stfFilename: 'swf.101993.000001.stf',
    fileUrl: null,
    filename: 'swf.101993.000001.stf',
    messageSizeBytes: null,
    messageTfCount: null,
    dataRoots: [root],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    messageChecksum: null,
    outputDir: null,
    stfChecksum: false,
    ...overrides,
  };
}

describe('STF task in the worker', () => {
  it('reads a JSON-text STF under a data root: size from the file, tf_count from the default', async () => {
    const result = await runStfTask(task({}));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.path).toBe(path.join(root, 'swf.101993.000001.stf'));
    expect(result.header).toMatchObject({
      format: 'json',
      runId: '101993',
      state: 'run',
      substate: 'physics',
    });
    expect(result.tfCountSource).toBe('default');
    expect(result.tfCount).toBe(1000);
    expect(result.sizeBytes).toBe(result.header?.sizeBytes);
    expect(result.samples).toHaveLength(7);
    expect(result.samples.every((s) => s.fileSizeBytes !== null)).toBe(true);
  });

  it('takes tf_count from the STF header over the message, and the message over the default', async () => {
    const fromHeader = await runStfTask(
      task({ filename: 'run1/swf.101993.000002.stf', messageTfCount: 900 }),
    );
    expect(fromHeader).toMatchObject({ ok: true, tfCount: 500, tfCountSource: 'header' });
    const fromMessage = await runStfTask(task({ messageTfCount: 900 }));
    expect(fromMessage).toMatchObject({ ok: true, tfCount: 900, tfCountSource: 'message' });
  });

  it('follows file:// URLs inside the roots, percent-encoding included', async () => {
    const url = pathToFileURL(path.join(root, 'run1', 'swf.101993.000002.stf')).href;
    expect(await runStfTask(task({ fileUrl: url }))).toMatchObject({ ok: true, tfCountSource: 'header' });
  });

  it('samples from message metadata when the STF is not on this machine', async () => {
    const noRoots = await runStfTask(task({ dataRoots: [], messageSizeBytes: 7000 }));
    expect(noRoots).toMatchObject({ ok: true, path: null, sizeBytes: 7000, tfCountSource: 'default' });
    const remote = await runStfTask(task({ fileUrl: 'root://dcintdoor.sdcc.bnl.gov:1094//pnfs/x.stf' }));
    expect(remote).toMatchObject({ ok: true, path: null });
    const missing = await runStfTask(task({ filename: 'swf.101993.000099.stf' }));
    expect(missing).toMatchObject({ ok: true, path: null, warning: { code: 'STF_NOT_FOUND' } });
  });

  it('refuses paths that escape the data roots: .., absolute, symlinks, encoded dots', async () => {
    const attempts: Partial<StfTask>[] = [
      { filename: '../outside/secret.stf' },
      { filename: 'run1/../../outside/secret.stf' },
      { filename: path.join(outside, 'secret.stf') },
      { filename: 'link-out.stf' },
      { filename: 'dir-out/secret.stf' },
      { fileUrl: pathToFileURL(path.join(outside, 'secret.stf')).href },
      { fileUrl: `file://${root}/%2e%2e/outside/secret.stf` },
      { fileUrl: 'file:///etc/passwd' },
    ];
    for (const attempt of attempts) {
      const result = await runStfTask(task(attempt));
      expect(result, JSON.stringify(attempt)).toMatchObject({
        ok: false,
        error: { code: 'PATH_OUTSIDE_ROOTS' },
      });
    }
    expect(await runStfTask(task({ filename: 'a\0b' }))).toMatchObject({
      ok: false,
      error: { code: 'PATH_INVALID' },
    });
    expect(await runStfTask(task({ fileUrl: 'file://otherhost/data/x.stf' }))).toMatchObject({
      ok: false,
      error: { code: 'PATH_INVALID' },
    });
  });

  it('gives typed errors for empty, corrupt and unknown-format STFs', async () => {
    expect(await runStfTask(task({ filename: 'empty.stf' }))).toMatchObject({
      ok: false,
      error: { code: 'STF_EMPTY' },
    });
    const corrupt = await runStfTask(task({ filename: 'corrupt.stf' }));
    expect(corrupt).toMatchObject({ ok: false, error: { code: 'STF_HEADER_CORRUPT' } });
    if (!corrupt.ok) expect(corrupt.error.message).toContain('corrupt.stf');
    expect(await runStfTask(task({ filename: 'binary.stf' }))).toMatchObject({
      ok: false,
      error: { code: 'STF_BAD_MAGIC' },
    });
  });
});
