import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { isFastmonError } from '../src/errors.js';
import { Ledger } from '../src/inputs/ledger.js';
import { CatalogRegistrar } from '../src/sinks/catalog.js';
import { Outbox } from '../src/sinks/outbox.js';
import type { SampleRecord } from '../src/sinks/registrar.js';
import { storeOptions } from '../src/store/paths.js';
import { Store } from '../src/store/store.js';
import { captureLogs } from './support/logs.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function temp(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-store-'));
  dirs.push(dir);
  return dir;
}

function sample(stf: string, n: number, tfFirst = n * 10): SampleRecord {
  return {
    stfFilename: stf,
    tfFilename: `${stf.replace(/\.stf$/, '')}_tf_${String(n).padStart(3, '0')}.tf`,
    tfFirst,
    tfLast: tfFirst + 4,
    tfCount: 5,
    fileSizeBytes: 1000,
    checksum: null,
    metadata: { run_id: '101993', processed_by: 'test' },
  };
}

function query<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

/** The configuration with the default file names, in `dir` instead of the working directory. */
function configFor(dir: string, flags: Record<string, string>) {
  const defaults = {
    'agent.catalog': 'fastmon.sqlite',
    'scan.ledger': 'fastmon-ledger.tsv',
    'agent.outbox': 'fastmon-outbox.jsonl',
  };
  const { config } = loadConfig({ env: {}, flags: new Map(Object.entries({ ...defaults, ...flags })) });
  config.agent.catalog = path.resolve(dir, config.agent.catalog);
  config.scan.ledger = path.resolve(dir, config.scan.ledger);
  config.agent.outbox = path.resolve(dir, config.agent.outbox);
  return config;
}

describe('the catalog keeps swf-monitor uniqueness rules', () => {
  it('a repeated tf_filename returns the first row, concurrent or later, and a different range is logged', async () => {
    const file = path.join(temp(), 'fastmon.sqlite');
    const logs = captureLogs();
    const catalog = new CatalogRegistrar(await Store.acquire({ file }), logs.logger, true);
    const [a, b] = await Promise.all([
      catalog.register(sample('swf.101993.000001.stf', 1)),
      catalog.register(sample('swf.101993.000001.stf', 1)),
    ]);
    expect(a!.created).toBe(true);
    expect(b).toEqual({ tfFileId: a!.tfFileId, created: false });
    const later = await catalog.register(sample('swf.101993.000001.stf', 1, 500));
    expect(later).toEqual({ tfFileId: a!.tfFileId, created: false });
    expect(logs.find((r) => r.code === 'REGISTRATION_CONFLICT')?.conflict).toBe(
      'range [10, 14] != [500, 504]',
    );
    await catalog.close();
    expect(query(file, 'SELECT tf_first FROM fastmon_files')).toEqual([{ tf_first: 10 }]);
  });

  it('tf_filename, stf_filename and run_number are UNIQUE in the file itself, as in swf-monitor', async () => {
    const file = path.join(temp(), 'fastmon.sqlite');
    const catalog = new CatalogRegistrar(await Store.acquire({ file }), captureLogs().logger, true);
    await catalog.ensureStf({
      stfFilename: 'swf.101993.000001.stf',
      runNumber: 101993,
      sizeBytes: 10,
      checksum: null,
      tfCount: 50,
      state: 'physics',
      substate: 'running',
      metadata: {},
    });
    await catalog.register(sample('swf.101993.000001.stf', 1));
    await catalog.close();
    const db = new Database(file);
    const dup = (sql: string) => {
      try {
        db.exec(sql);
        return 'inserted';
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    expect(dup("INSERT INTO runs (run_number, start_time) VALUES (101993, 'x')")).toBe(
      'SQLITE_CONSTRAINT_UNIQUE',
    );
    expect(
      dup(
        "INSERT INTO stf_files (file_id, machine_state, stf_filename, created_at, status) VALUES ('f2', 'physics', 'swf.101993.000001.stf', 'x', 'registered')",
      ),
    ).toBe('SQLITE_CONSTRAINT_UNIQUE');
    const stfId = db.prepare('SELECT file_id FROM stf_files').pluck().get();
    expect(
      dup(
        `INSERT INTO fastmon_files (tf_file_id, tf_filename, status, created_at, updated_at, stf_file_id) VALUES ('t2', 'swf.101993.000001_tf_001.tf', 'registered', 'x', 'x', '${stfId}')`,
      ),
    ).toBe('SQLITE_CONSTRAINT_UNIQUE');
    db.close();
    const rows = query<{ run_number: number; stf_filename: string; tf_count: number; n: number }>(
      file,
      `SELECT r.run_number, s.stf_filename, s.tf_count, count(f.tf_file_id) AS n
       FROM runs r JOIN stf_files s USING (run_id) LEFT JOIN fastmon_files f ON f.stf_file_id = s.file_id GROUP BY s.file_id`,
    );
    expect(rows).toEqual([{ run_number: 101993, stf_filename: 'swf.101993.000001.stf', tf_count: 50, n: 1 }]);
  });

  it('refuses a file that is not a SQLite database, or one written by a newer version, with STORE_OPEN_FAILED', async () => {
    const dir = temp();
    const notDb = path.join(dir, 'notes.txt');
    writeFileSync(notDb, 'these are my notes, not a database\n'.repeat(100));
    const err = await Store.acquire({ file: notDb }).catch((e: unknown) => e);
    expect(isFastmonError(err, 'STORE_OPEN_FAILED')).toBe(true);
    expect((err as Error).message).toContain(notDb);
    expect(readFileSync(notDb, 'utf8')).toBe('these are my notes, not a database\n'.repeat(100));

    const newer = path.join(dir, 'newer.sqlite');
    const db = new Database(newer);
    db.pragma('user_version = 99');
    db.close();
    const refused = await Store.acquire({ file: newer }).catch((e: unknown) => e);
    expect(isFastmonError(refused, 'STORE_OPEN_FAILED')).toBe(true);
    expect((refused as Error).message).toMatch(/schema version 99, newer than/);
  });
});

describe('a stopped store leaves one file behind', () => {
  it('the WAL is folded back into the database, whether the store was written or only opened', async () => {
    const dir = temp();
    const opened = path.join(dir, 'opened.sqlite');
    await (await Store.acquire({ file: opened })).release();
    expect(existsSync(`${opened}-wal`)).toBe(false);
    expect(query(opened, 'SELECT count(*) AS n FROM outbox')).toEqual([{ n: 0 }]);

    const written = path.join(dir, 'written.sqlite');
    const outbox = await Outbox.open(written, { maxBytes: 1 << 20 });
    await outbox.append({ n: 1 });
    await outbox.close();
    expect(existsSync(`${written}-wal`)).toBe(false);
    expect(query(written, 'SELECT payload FROM outbox')).toEqual([{ payload: '{"n":1}' }]);
  });
});

describe('existing users keep their data: old files are imported once, then left in place', () => {
  const oldCatalog = [
    JSON.stringify({
      kind: 'stf_file',
      stf_filename: 'swf.100001.000001.stf',
      run_number: 100001,
      file_size_bytes: 4096,
      checksum: null,
      tf_count: 50,
      machine_state: 'physics',
      metadata: { substate: 'running' },
      created_at: '2026-07-01T12:00:00.000Z',
    }),
    ...[1, 2].map((n) =>
      JSON.stringify({
        kind: 'fastmon_file',
        tf_file_id: `00000000-0000-4000-8000-00000000000${n}`,
        stf_file: 'swf.100001.000001.stf',
        tf_filename: `swf.100001.000001_tf_00${n}.tf`,
        file_size_bytes: 100,
        checksum: null,
        status: 'registered',
        metadata: { run_id: '100001' },
        tf_first: n,
        tf_last: n,
        tf_count: 1,
        created_at: '2026-07-01T12:00:01.000Z',
        updated_at: '2026-07-01T12:00:01.000Z',
      }),
    ),
    '{"kind":"fastmon_file","tf_file', // torn by a crash
  ].join('\n');
  const oldLedger = [
    '#swf-fastmon-ledger v1',
    'sampled\t1048576\t1712345678901.1235\t/data/swf.100001.000001.stf',
    'failed\t20\t1712345678955\t/data/with\\nnewline.stf',
    'skipped\t0\t1712345679000\t/data/forgotten.stf',
    'forget\t/data/forgotten.stf',
    'sampled\t1\t2\t/data/tab\there.stf',
    '',
  ].join('\n');
  const oldOutbox = [
    '#swf-fastmon-outbox v1 next=7',
    `put\t4\t${JSON.stringify({ n: 4 })}`,
    `put\t5\t${JSON.stringify({ n: 5 })}`,
    'done\t4',
    `put\t6\t${JSON.stringify({ n: 6, text: 'a\ttab' })}`,
    '',
  ].join('\n');

  it('the catalog, ledger and outbox at the configured paths are imported on first start, logged, and kept', async () => {
    const dir = temp();
    writeFileSync(path.join(dir, 'fastmon-catalog.jsonl'), oldCatalog);
    writeFileSync(path.join(dir, 'fastmon-ledger.tsv'), oldLedger);
    writeFileSync(path.join(dir, 'fastmon-outbox.jsonl'), oldOutbox);
    // The defaults: agent.catalog = fastmon.sqlite, scan.ledger and agent.outbox the old names.
    const config = configFor(dir, {});
    const logs = captureLogs();
    const options = storeOptions(config, logs.logger);
    expect(options.file).toBe(path.join(dir, 'fastmon.sqlite'));
    const store = await Store.acquire(options);
    const ledger = new Ledger(store);
    const outbox = await Outbox.open(store, { maxBytes: 1 << 20 });
    expect(ledger.get('/data/swf.100001.000001.stf')).toEqual({
      size: 1048576,
      mtimeMs: 1712345678901.1235,
      outcome: 'sampled',
    });
    expect(ledger.get('/data/with\nnewline.stf')?.outcome).toBe('failed');
    expect(ledger.get('/data/tab\there.stf')?.size).toBe(1);
    expect(ledger.has('/data/forgotten.stf')).toBe(false);
    expect([...outbox.pending()].map((e) => e.payload)).toEqual([{ n: 5 }, { n: 6, text: 'a\ttab' }]);
    expect(outbox.depth).toBe(2);
    await store.release();

    const file = options.file;
    expect(
      query(file, 'SELECT tf_file_id, tf_filename, created_at FROM fastmon_files ORDER BY rowid'),
    ).toEqual([
      {
        tf_file_id: '00000000-0000-4000-8000-000000000001',
        tf_filename: 'swf.100001.000001_tf_001.tf',
        created_at: '2026-07-01T12:00:01.000Z',
      },
      {
        tf_file_id: '00000000-0000-4000-8000-000000000002',
        tf_filename: 'swf.100001.000001_tf_002.tf',
        created_at: '2026-07-01T12:00:01.000Z',
      },
    ]);
    expect(
      query(file, 'SELECT s.tf_count, r.run_number FROM stf_files s JOIN runs r USING (run_id)'),
    ).toEqual([{ tf_count: 50, run_number: 100001 }]);
    const imports = logs.records().filter((r) => String(r.msg).startsWith('imported the old'));
    expect(imports.map((r) => [r.kind, r.rows, r.skipped])).toEqual([
      ['catalog', 2, 1],
      ['ledger', 4, 0],
      ['outbox', 2, 0],
    ]);
    for (const name of ['fastmon-catalog.jsonl', 'fastmon-ledger.tsv', 'fastmon-outbox.jsonl'])
      expect(existsSync(path.join(dir, name))).toBe(true);

    // Once only: a second start imports nothing, even with the entries replayed and the files still there.
    const again = captureLogs();
    const reopened = await Store.acquire(storeOptions(config, again.logger));
    const box = await Outbox.open(reopened, { maxBytes: 1 << 20 });
    for (const { seq } of [...box.pending()]) await box.complete(seq);
    await reopened.release();
    const third = await Store.acquire(storeOptions(config, again.logger));
    expect(third.outboxDepth).toBe(0);
    await third.release();
    expect(again.find((r) => String(r.msg).startsWith('imported'))).toBeUndefined();
    expect(query(file, 'SELECT count(*) AS n FROM fastmon_files')).toEqual([{ n: 2 }]);
  });

  it('an old command line naming a .jsonl catalog keeps working: the store is the .sqlite file beside it', async () => {
    const dir = temp();
    const jsonl = path.join(dir, 'sub', 'my-catalog.jsonl');
    mkdirSync(path.dirname(jsonl));
    writeFileSync(jsonl, oldCatalog);
    const options = storeOptions(configFor(dir, { 'agent.catalog': jsonl }), captureLogs().logger);
    expect(options.file).toBe(path.join(dir, 'sub', 'my-catalog.sqlite'));
    const store = await Store.acquire(options);
    await store.release();
    expect(query(options.file, 'SELECT count(*) AS n FROM fastmon_files')).toEqual([{ n: 2 }]);
    expect(readFileSync(jsonl, 'utf8')).toBe(oldCatalog);
  });

  it('a ledger file that is not a ledger stops the start with LEDGER_INVALID and imports nothing', async () => {
    const dir = temp();
    const bogus = path.join(dir, 'notes.tsv');
    writeFileSync(bogus, 'a\tb\tc\n');
    const config = configFor(dir, { 'scan.ledger': bogus });
    const err = await Store.acquire(storeOptions(config, captureLogs().logger)).catch((e: unknown) => e);
    expect(isFastmonError(err, 'LEDGER_INVALID')).toBe(true);
    expect((err as Error).message).toContain(bogus);
    expect(query(path.join(dir, 'fastmon.sqlite'), 'SELECT count(*) AS n FROM imports')).toEqual([{ n: 0 }]);
  });
});

describe('a full disk', () => {
  it('gives a coded error naming the disk, keeps what was acknowledged, and leaves the database intact', async () => {
    const dir = temp();
    const mnt = path.join(dir, 'small');
    mkdirSync(mnt);
    // A 6 MB tmpfs (root only, as in CI): room for the WAL (up to ~4 MB before a checkpoint) and some rows.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
    try {
      const file = path.join(mnt, 'fastmon.sqlite');
      const catalog = new CatalogRegistrar(await Store.acquire({ file }), captureLogs().logger, true);
      const acknowledged: string[] = [];
      let refused: unknown;
      for (let n = 0; n < 100_000 && refused === undefined; n++) {
        const s = {
          ...sample(`swf.101993.${String(n).padStart(6, '0')}.stf`, n),
          metadata: { pad: 'x'.repeat(500) },
        };
        await catalog.register(s).then(
          () => acknowledged.push(s.tfFilename),
          (err: unknown) => (refused = err),
        );
      }
      expect(isFastmonError(refused, 'CATALOG_WRITE_FAILED')).toBe(true);
      expect((refused as Error).message).toMatch(/disk full \(SQLITE_FULL\)/);
      expect((refused as Error).message).toContain(file);
      expect(acknowledged.length).toBeGreaterThan(100);
      await catalog.close();
      const db = new Database(file, { readonly: true });
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const names = db.prepare('SELECT tf_filename FROM fastmon_files ORDER BY rowid').pluck().all();
      db.close();
      expect(names).toEqual(acknowledged);
    } finally {
      // Lazily: a failed assertion may leave the store's thread holding the file.
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
