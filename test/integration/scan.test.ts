import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { databaseFile } from '../../src/store/paths.js';
import { writeStf } from '../../workers/stf-writer.js';
import { type Started, startCli } from '../support/cli.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const made: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function temp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-scan-'));
  made.push(d);
  return d;
}

function start(args: string[], env: Record<string, string>, cwd: string): Started {
  const started = startCli(args, { FASTMON_HTTP_PORT: '-1', SWF_LOG_LEVEL: 'warn', ...env }, cwd);
  children.push(started.proc);
  return started;
}

async function runCli(args: string[], env: Record<string, string>, cwd: string) {
  const s = start(args, env, cwd);
  const code = await s.exited;
  return { code, ...s.out };
}

/** A binary STF of a few small TFs; written atomically like the DAQ would. */
async function stf(dir: string, run: number, seq: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `swf.${run}.${String(seq).padStart(6, '0')}.stf`);
  await writeStf(
    file,
    {
      runNumber: BigInt(run),
      stfSequence: BigInt(seq),
      state: 'run',
      substate: 'physics',
      startNs: 0n,
      endNs: 0n,
      tfLengths: Array.from({ length: 50 }, () => 64),
    },
    (tf, offset, into) => {
      into.fill((tf + offset + seq) & 0xff);
    },
  );
  return file;
}

/**
 * The store's StfFile and FastMonFile rows, tagged with `kind`. A `--catalog` name ending in .jsonl
 * (an old command line, kept working) means the .sqlite file beside it.
 */
function catalogRows(file: string): Record<string, unknown>[] {
  const db = new Database(databaseFile(file), { readonly: true, fileMustExist: true });
  try {
    const stfs = db
      .prepare(
        `SELECT 'stf_file' AS kind, s.stf_filename, r.run_number, s.tf_count, s.file_size_bytes
         FROM stf_files s LEFT JOIN runs r USING (run_id) ORDER BY s.rowid`,
      )
      .all() as Record<string, unknown>[];
    const samples = db
      .prepare(
        `SELECT 'fastmon_file' AS kind, f.tf_file_id, f.tf_filename, s.stf_filename AS stf_file, f.tf_first,
           f.tf_last, f.tf_count, f.metadata
         FROM fastmon_files f JOIN stf_files s ON s.file_id = f.stf_file_id ORDER BY f.rowid`,
      )
      .all() as Record<string, unknown>[];
    for (const row of samples) row.metadata = JSON.parse(String(row.metadata));
    return [...stfs, ...samples];
  } finally {
    db.close();
  }
}

async function until(
  predicate: () => boolean,
  what: string,
  context: () => string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('swf-fastmon scan', () => {
  let double: MonitorDouble;
  afterAll(() => double?.close());

  it('registers the Run and StfFile it finds on disk before the samples, under the right run, once', async () => {
    double = await startMonitorDouble();
    // Another run exists first: the original agent registered every STF under the first run of
    // the table because GET /api/runs/?run_number= is not filtered.
    double.addRun({ run_number: 100010 });
    const dir = temp();
    for (const seq of [1, 2, 3]) await stf(path.join(dir, 'a'), 101993, seq);
    for (const seq of [1, 2]) await stf(path.join(dir, 'b'), 101994, seq);
    writeFileSync(path.join(dir, 'a', 'notes.txt'), 'not an STF');
    const env = { SWF_MONITOR_URL: double.url, SWF_API_TOKEN: double.token };
    const first = await runCli(['scan', '--recursive', dir], env, dir);
    expect(first.code, first.stderr).toBe(0);
    const runPk = (n: number) => double.runs.find((r) => r.run_number === n)?.run_id;
    expect(double.runs.map((r) => r.run_number).sort()).toEqual([100010, 101993, 101994]);
    expect(double.stfFiles).toHaveLength(5);
    for (const row of double.stfFiles) {
      const run = Number(row.stf_filename.split('.')[1]);
      expect(row.run, row.stf_filename).toBe(runPk(run));
      expect(row.tf_count).toBe(50);
      expect(row.file_size_bytes).toBeGreaterThan(50 * 64);
    }
    expect(double.fastmonFiles).toHaveLength(35);
    expect(first.stdout).toMatch(/files: 5 seen, 5 sampled, 0 skipped, 0 failed/);

    const again = await runCli(['scan', '--recursive', dir], env, dir);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/files: 5 seen, 0 sampled, .* 5 handled before/);
    expect(double.stfFiles).toHaveLength(5);
    expect(double.fastmonFiles).toHaveLength(35);
  });

  it('honours patterns, recursion and the lookback window', async () => {
    const dir = temp();
    await stf(dir, 101993, 1);
    await stf(path.join(dir, 'sub'), 101993, 2);
    const old = await stf(dir, 101993, 3);
    const { utimesSync } = await import('node:fs');
    utimesSync(old, new Date(Date.now() - 3 * 3600_000), new Date(Date.now() - 3 * 3600_000));
    writeFileSync(path.join(dir, 'swf.101993.000004.stf.part'), 'partial');
    const catalog = path.join(dir, 'catalog.jsonl');
    const result = await runCli(['scan', '--catalog', catalog, '--lookback-minutes', '60', dir], {}, dir);
    expect(result.code, result.stderr).toBe(0);
    const stfs = catalogRows(catalog)
      .filter((r) => r.kind === 'stf_file')
      .map((r) => r.stf_filename);
    expect(stfs).toEqual(['swf.101993.000001.stf']);
    expect(result.stdout).toMatch(/files: 2 seen, 1 sampled, .* 1 too old/);
  });

  it('splits a tree into shards with no overlap and no gap', async () => {
    const dir = temp();
    for (let seq = 1; seq <= 30; seq++) await stf(path.join(dir, `d${seq % 4}`), 102000, seq);
    const shards: string[][] = [];
    for (let i = 0; i < 3; i++) {
      const catalog = path.join(dir, `catalog-${i}.jsonl`);
      const ledger = path.join(dir, `ledger-${i}.jsonl`);
      const r = await runCli(
        ['scan', '--recursive', '--shard', `${i}/3`, '--catalog', catalog, '--ledger', ledger, dir],
        {},
        dir,
      );
      expect(r.code, r.stderr).toBe(0);
      shards.push(
        catalogRows(catalog)
          .filter((row) => row.kind === 'stf_file')
          .map((row) => String(row.stf_filename)),
      );
    }
    const all = shards.flat();
    expect(new Set(all).size).toBe(30);
    expect(all).toHaveLength(30);
    expect(shards.every((s) => s.length > 0)).toBe(true);
  });

  it('skips unreadable, zero-byte and corrupt files with their reason and exits 1, having done the rest', async () => {
    const dir = temp();
    await stf(dir, 101993, 1);
    writeFileSync(path.join(dir, 'swf.101993.000002.stf'), '');
    writeFileSync(path.join(dir, 'swf.101993.000003.stf'), Buffer.from('garbage, not an STF'));
    writeFileSync(path.join(dir, 'notarun.stf'), readFileSync(path.join(dir, 'swf.101993.000001.stf')));
    const catalog = path.join(dir, 'catalog.jsonl');
    const r = await runCli(['scan', '--catalog', catalog, dir], { SWF_LOG_LEVEL: 'info' }, dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ZERO_BYTE/);
    expect(r.stderr).toMatch(/STF_BAD_MAGIC/);
    const rows = catalogRows(catalog);
    expect(
      rows
        .filter((row) => row.kind === 'stf_file')
        .map((row) => row.stf_filename)
        .sort(),
    ).toEqual([
      'notarun.stf', // the run comes from its header when the name has none
      'swf.101993.000001.stf',
    ]);
    const ignoring = await runCli(['scan', '--no-fail-exit', '--catalog', catalog, dir], {}, dir);
    expect(ignoring.code).toBe(0);
  });
});

describe('a 100,000-file tree', () => {
  it('processes every matching file exactly once, and nothing on the second pass', async () => {
    // tmpfs when there is one: creating 100,000 files on the overlay disk alone takes minutes.
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const top = mkdtempSync(path.join(base, 'fastmon-100k-'));
    made.push(top);
    const tree = path.join(top, 'tree');
    const names = new Set<string>();
    for (let d = 0; d < 100; d++) {
      mkdirSync(path.join(tree, `d${d}`, 'sub'), { recursive: true });
      for (let i = 0; i < 1000; i++) {
        const name = `swf.106000.${String(d * 1000 + i).padStart(6, '0')}.stf`;
        names.add(name);
        // Half one level deeper, and a non-matching neighbour every 10th file.
        writeFileSync(path.join(tree, `d${d}`, i % 2 ? 'sub' : '', name), '{"run_id": 106000}');
        if (i % 10 === 0) writeFileSync(path.join(tree, `d${d}`, `${name}.tmp`), 'partial');
      }
    }
    const catalog = path.join(top, 'catalog.jsonl');
    const args = [
      'scan',
      '--recursive',
      '--tf-files-per-stf',
      '1',
      '--catalog',
      catalog,
      '--ledger',
      path.join(top, 'ledger.jsonl'),
      tree,
    ];
    const first = await runCli(args, {}, top);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    expect(first.stdout).toMatch(/files: 100000 seen, 100000 sampled, 0 skipped, 0 failed, 0 unreadable/);
    const rows = catalogRows(catalog);
    const stfs = rows.filter((r) => r.kind === 'stf_file').map((r) => String(r.stf_filename));
    expect(stfs).toHaveLength(100_000);
    expect(new Set(stfs)).toEqual(names);
    const samples = rows.filter((r) => r.kind === 'fastmon_file').map((r) => String(r.tf_filename));
    expect(new Set(samples).size).toBe(100_000);
    expect(samples).toHaveLength(100_000);

    const second = await runCli(args, {}, top);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/files: 100000 seen, 0 sampled, .* 100000 handled before/);
    expect(catalogRows(catalog)).toHaveLength(200_000);
  }, 600_000);
});

describe('swf-fastmon scan killed with SIGKILL', () => {
  it('restarts without a sample lost or doubled: every one announced before the kill keeps its row and id', async () => {
    const top = temp();
    const tree = path.join(top, 'tree');
    const names: string[] = [];
    for (let d = 0; d < 4; d++) {
      mkdirSync(path.join(tree, `d${d}`), { recursive: true });
      for (let i = 0; i < 1000; i++) {
        const name = `swf.107100.${String(d * 1000 + i).padStart(6, '0')}.stf`;
        names.push(name);
        writeFileSync(path.join(tree, `d${d}`, name), '{"run_id": 107100}');
      }
    }
    const catalog = path.join(top, 'fastmon.sqlite');
    const args = ['scan', '--recursive', '--tf-files-per-stf', '3', '--catalog', catalog, tree];
    const announced = (stdout: string) =>
      stdout
        .split('\n')
        .filter((l) => l.includes('"tf_file_registered"'))
        .map((l) => JSON.parse(l) as { tf_filename: string; tf_file_id: string });
    const first = start(args, {}, top);
    await until(
      () => announced(first.out.stdout).length >= 1500,
      'samples announced before the kill',
      () => first.out.stderr,
      60_000,
    );
    first.proc.kill('SIGKILL');
    await first.exited;
    const beforeKill = announced(first.out.stdout);
    const rowsAtKill = catalogRows(catalog).filter((r) => r.kind === 'fastmon_file').length;
    expect(rowsAtKill).toBeLessThan(12_000);

    const second = await runCli(args, {}, top);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    expect(second.stdout).toMatch(/files: 4000 seen, \d+ sampled, .* \d+ handled before/);
    const rows = catalogRows(catalog);
    const samples = rows.filter((r) => r.kind === 'fastmon_file');
    expect(samples).toHaveLength(12_000);
    expect(new Set(samples.map((r) => r.tf_filename)).size).toBe(12_000);
    const perStf = new Map<string, number>();
    for (const r of samples) perStf.set(String(r.stf_file), (perStf.get(String(r.stf_file)) ?? 0) + 1);
    expect([...perStf.keys()].sort()).toEqual(names.sort());
    expect([...perStf.values()].every((n) => n === 3)).toBe(true);
    const idOf = new Map(samples.map((r) => [r.tf_filename, r.tf_file_id]));
    const changed = beforeKill.filter((n) => idOf.get(n.tf_filename) !== n.tf_file_id);
    expect(changed).toEqual([]);
    const db = new Database(catalog, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare('SELECT count(*) FROM ledger').pluck().get()).toBe(4000);
    db.close();
  }, 180_000);
});

describe('swf-fastmon watch', () => {
  it('picks up new STFs as they land, never a partial one, survives the directory being recreated, and does not reprocess after a restart', async () => {
    const top = temp();
    const dir = path.join(top, 'incoming');
    mkdirSync(dir);
    const catalog = path.join(top, 'catalog.jsonl');
    const args = ['watch', '--catalog', catalog, '--settle-ms', '300', '--poll-interval-s', '0.5', dir];
    const env = { SWF_LOG_LEVEL: 'info' };
    const w = start(args, env, top);
    const stfsIn = () =>
      catalogRowsSafe(catalog)
        .filter((r) => r.kind === 'stf_file')
        .map((r) => String(r.stf_filename));
    await until(
      () => w.out.stderr.includes('watching for new STFs'),
      'the watcher to start',
      () => w.out.stderr,
    );

    await stf(dir, 103000, 1); // renamed into place
    await until(
      () => stfsIn().includes('swf.103000.000001.stf'),
      'the first STF',
      () => w.out.stderr,
    );

    // A slow writer without a temporary name: half now, the rest later.
    const slow = await stf(path.join(top, 'staging'), 103000, 2);
    const bytes = readFileSync(slow);
    const target = path.join(dir, path.basename(slow));
    writeFileSync(target, bytes.subarray(0, 1000));
    await new Promise((r) => setTimeout(r, 150));
    writeFileSync(target, bytes);
    await until(
      () => stfsIn().includes('swf.103000.000002.stf'),
      'the slowly written STF',
      () => w.out.stderr,
    );
    expect(w.out.stderr).not.toMatch(/STF_TRUNCATED|STF_HEADER_CORRUPT/);

    // The directory is deleted and recreated under the watcher.
    rmSync(dir, { recursive: true });
    mkdirSync(dir);
    await new Promise((r) => setTimeout(r, 700));
    const moved = await stf(path.join(top, 'staging2'), 103000, 3);
    renameSync(moved, path.join(dir, path.basename(moved)));
    await until(
      () => stfsIn().includes('swf.103000.000003.stf'),
      'an STF in the recreated directory',
      () => w.out.stderr,
    );

    w.proc.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(stfsIn()).toHaveLength(3);

    // Restart: the ledger says all three are done.
    await stf(dir, 103000, 4);
    const again = start(args, env, top);
    await until(
      () => stfsIn().includes('swf.103000.000004.stf'),
      'the STF written while stopped',
      () => again.out.stderr,
    );
    again.proc.kill('SIGTERM');
    expect(await again.exited).toBe(0);
    expect(stfsIn().sort()).toEqual([
      'swf.103000.000001.stf',
      'swf.103000.000002.stf',
      'swf.103000.000003.stf',
      'swf.103000.000004.stf',
    ]);
    expect(catalogRowsSafe(catalog).filter((r) => r.kind === 'fastmon_file')).toHaveLength(28);
  });

  it('takes a burst of thousands of new files in a second, each exactly once', async () => {
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const top = mkdtempSync(path.join(base, 'fastmon-burst-'));
    made.push(top);
    const dir = path.join(top, 'incoming');
    const staging = path.join(top, 'staging');
    mkdirSync(dir);
    mkdirSync(staging);
    const catalog = path.join(top, 'catalog.jsonl');
    const args = [
      'watch',
      '--catalog',
      catalog,
      '--settle-ms',
      '200',
      '--poll-interval-s',
      '2',
      '--tf-files-per-stf',
      '1',
      dir,
    ];
    const w = start(args, { SWF_LOG_LEVEL: 'info' }, top);
    await until(
      () => w.out.stderr.includes('watching for new STFs'),
      'the watcher to start',
      () => w.out.stderr,
    );
    const names: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const name = `swf.104000.${String(i).padStart(6, '0')}.stf`;
      writeFileSync(path.join(staging, name), '{"run_id": 104000}');
      names.push(name);
    }
    for (const name of names) renameSync(path.join(staging, name), path.join(dir, name)); // well under a second
    const stfs = () => catalogRowsSafe(catalog).filter((r) => r.kind === 'stf_file');
    await until(
      () => stfs().length >= 3000,
      '3000 STFs',
      () => w.out.stderr,
      120_000,
    );
    await new Promise((r) => setTimeout(r, 2500)); // one more rescan: nothing may come twice
    w.proc.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    const seen = stfs().map((r) => String(r.stf_filename));
    expect(seen).toHaveLength(3000);
    expect(new Set(seen)).toEqual(new Set(names));
  }, 180_000);

  it('runs as the agent in FASTMON_MODE=continuous over FASTMON_WATCH_DIRS', async () => {
    const top = temp();
    const dir = path.join(top, 'daq');
    mkdirSync(dir);
    const catalog = path.join(top, 'catalog.jsonl');
    const a = start(
      ['agent'],
      {
        FASTMON_MODE: 'continuous',
        FASTMON_WATCH_DIRS: dir,
        FASTMON_CATALOG: catalog,
        FASTMON_SETTLE_MS: '200',
        SWF_LOG_LEVEL: 'info',
      },
      top,
    );
    await until(
      () => a.out.stderr.includes('watching for new STFs'),
      'the watcher',
      () => a.out.stderr,
    );
    await stf(dir, 103100, 1);
    await until(
      () => catalogRowsSafe(catalog).filter((r) => r.kind === 'fastmon_file').length === 7,
      'seven samples',
      () => a.out.stderr,
    );
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(a.out.stdout).toMatch(/"msg_type":"tf_file_registered".*"run_id":"103100"/);
  });
});

function catalogRowsSafe(file: string): Record<string, unknown>[] {
  try {
    return catalogRows(file);
  } catch {
    return [];
  }
}
