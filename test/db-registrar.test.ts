// The PostgreSQL registrar against a real PostgreSQL: same rows as the REST path, batches, refusals.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import { MonitorClient } from '../src/monitor/client.js';
import { MonitorHttp } from '../src/monitor/http.js';
import { DbRegistrar, type DbRegistrarOptions } from '../src/sinks/db-registrar.js';
import { isDefinitiveRefusal } from '../src/sinks/deferred-samples.js';
import { Outbox } from '../src/sinks/outbox.js';
import { OutboxDrainer } from '../src/sinks/outbox-drainer.js';
import { MonitorRegistrar, type SampleRecord, type StfRecord } from '../src/sinks/registrar.js';
import { Store } from '../src/store/store.js';
import { captureLogs } from './support/logs.js';
import { type MonitorDouble, startMonitorDouble } from './support/monitor-double.js';
import { MONITOR_DDL } from './support/monitor-schema.js';
import { createTestDatabase, fastmonRows, seedStfs, type TestDatabase } from './support/postgres.js';
import { rememberSecret } from './support/secrets.js';
import { startTcpProxy } from './support/tcp-proxy.js';

const RUN = 101993;
const stfName = (seq: number) => `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;

/** Seven samples of an STF, shaped as the scheduler builds them. */
function samples(seq: number, shift = 0): SampleRecord[] {
  return Array.from({ length: 7 }, (_, k) => ({
    stfFilename: stfName(seq),
    tfFilename: `swf.${RUN}.${String(seq).padStart(6, '0')}_tf_${String(k + 1).padStart(3, '0')}.tf`,
    tfFirst: k * 20 + shift,
    tfLast: k * 20 + 9 + shift,
    tfCount: 10,
    fileSizeBytes: 1000 * (k + 1) + seq,
    checksum: k % 2 ? `ad:${1000 + k}` : null,
    metadata: {
      run_id: String(RUN),
      stf_tf_count: 150,
      tf_count_source: 'header',
      stf_checksum: null,
      sample_index: k,
      sample_file: null,
      processed_by: 'fastmon-agent-test-1',
      nested: { a: [1, 2.5, 'x'], b: null },
    },
  }));
}

let db: TestDatabase;
let double: MonitorDouble;
const opened: DbRegistrar[] = [];

async function dbRegistrar(over: Partial<DbRegistrarOptions> = {}, logs = captureLogs()) {
  const r = await DbRegistrar.open({
    url: db.url,
    connections: 2,
    timeoutMs: 2000,
    batchRows: 500,
    flushMs: 2,
    logger: logs.logger,
    ...over,
  });
  opened.push(r);
  return r;
}

function restRegistrar(logs = captureLogs()) {
  const http = new MonitorHttp({
    url: double.url,
    token: double.token,
    timeoutMs: 2000,
    connections: 4,
    pipelining: 1,
    retries: 1,
    retryDelayMs: 10,
    logger: logs.logger,
  });
  return new MonitorRegistrar(new MonitorClient(http), logs.logger);
}

beforeAll(async () => {
  db = await createTestDatabase();
  double = await startMonitorDouble();
});
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close().catch(() => {});
  await db.pool.query('TRUNCATE swf_fastmon_files, swf_stf_files, swf_runs CASCADE');
});
const dirs: string[] = [];
afterAll(async () => {
  await double?.close();
  await db?.drop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** An outbox in a fresh store, holding these samples in this order. */
async function outboxOf(records: SampleRecord[]): Promise<Outbox> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-db-outbox-'));
  dirs.push(dir);
  const store = await Store.acquire({ file: path.join(dir, 'fastmon.sqlite') });
  const outbox = await Outbox.open(store, { maxBytes: 64 << 20, owned: true });
  await Promise.all(records.map((r) => outbox.append(r)));
  return outbox;
}

describe('the PostgreSQL registrar', () => {
  it('writes the FastMonFile rows swf-monitor would have written through its API, field by field', async () => {
    const seqs = [1, 2, 3];
    await seedStfs(db.pool, RUN, seqs.map(stfName));
    for (const seq of seqs) double.addStfFile({ stf_filename: stfName(seq), run_number: RUN });
    const rest = restRegistrar();
    const direct = await dbRegistrar();
    const records = seqs.flatMap((s) => samples(s));
    const before = new Date();
    const viaRest = await Promise.all(records.map((r) => rest.register(r)));
    const viaDb = await Promise.all(records.map((r) => direct.register(r)));
    expect(viaDb.every((r) => r.created)).toBe(true);
    expect(viaRest.every((r) => r.created)).toBe(true);

    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(records.length);
    for (const row of rows) {
      const api = double.fastmonFiles.find((f) => f.tf_filename === row.tf_filename);
      expect(api, row.tf_filename).toBeDefined();
      if (!api) continue;
      for (const field of [
        'stf_file',
        'tf_filename',
        'file_size_bytes',
        'checksum',
        'status',
        'metadata',
        'tf_count',
        'tf_first',
        'tf_last',
      ] as const) {
        expect(row[field], `${row.tf_filename}.${field}`).toEqual(api[field]);
      }
      // The keys and timestamps are minted per row, by each writer: same shape, fresh values.
      expect(row.tf_file_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(viaDb.map((r) => r.tfFileId)).toContain(row.tf_file_id);
      expect(row.created_at.getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
      expect(row.updated_at.getTime()).toBe(row.created_at.getTime());
      expect(api.created_at).toMatch(/Z$|[+-]\d\d:\d\d$/);
    }
  });

  it('writes the Run and StfFile rows of STFs found on disk as the API would', async () => {
    const stfs: StfRecord[] = [7, 8].map((seq) => ({
      stfFilename: `swf.102001.${String(seq).padStart(6, '0')}.stf`,
      runNumber: 102001,
      sizeBytes: 123456 + seq,
      checksum: 'ad:42',
      tfCount: 150,
      state: 'run',
      substate: 'physics',
      metadata: { created_by: 'fastmon-agent-test-1', source: 'disk', path: `/data/x${seq}.stf` },
    }));
    const rest = restRegistrar();
    const direct = await dbRegistrar();
    for (const s of stfs) await rest.ensureStf(s);
    await Promise.all(stfs.map((s) => direct.ensureStf(s)));
    await Promise.all(stfs.map((s) => direct.ensureStf(s))); // again: nothing changes
    const { rows } = await db.pool.query(
      `SELECT s.*, s.file_size_bytes::float8 AS file_size_bytes, r.run_number, r.run_conditions, r.end_time
         FROM swf_stf_files s JOIN swf_runs r USING (run_id) ORDER BY stf_filename`,
    );
    expect(rows).toHaveLength(2);
    const runs = await db.pool.query('SELECT * FROM swf_runs');
    expect(runs.rows).toHaveLength(1);
    for (const row of rows) {
      const api = double.stfFiles.find((f) => f.stf_filename === row.stf_filename);
      expect(api).toBeDefined();
      if (!api) continue;
      for (const field of [
        'machine_state',
        'stf_filename',
        'file_size_bytes',
        'checksum',
        'status',
        'metadata',
        'workflow_id',
        'daq_state',
        'daq_substate',
        'workflow_status',
        'tf_count',
      ] as const) {
        expect(row[field], field).toEqual(api[field]);
      }
      const apiRun = double.runs.find((r) => r.run_id === api.run);
      expect(row.run_number).toBe(apiRun?.run_number);
      expect(row.run_conditions).toEqual(apiRun?.run_conditions);
      expect(row.end_time).toBe(apiRun?.end_time);
    }
  });

  it("reads an STF's tf_count from its StfFile row, as the REST path does, null when there is none", async () => {
    await seedStfs(db.pool, RUN, [stfName(1), stfName(2)]);
    await db.pool.query('UPDATE swf_stf_files SET tf_count = 150 WHERE stf_filename = $1', [stfName(1)]);
    const direct = await dbRegistrar();
    const counts = await Promise.all([stfName(1), stfName(2), stfName(3)].map((n) => direct.stfTfCount(n)));
    expect(counts).toEqual([150, null, null]);
    double.addStfFile({ stf_filename: 'swf.101993.000777.stf', run_number: RUN, tf_count: 150 });
    expect(await restRegistrar().stfTfCount('swf.101993.000777.stf')).toBe(150);
  });

  it('puts the samples of many STFs in flight into a few shared statements', async () => {
    const seqs = Array.from({ length: 60 }, (_, i) => i + 1);
    await seedStfs(db.pool, RUN, seqs.map(stfName));
    const direct = await dbRegistrar({ batchRows: 100, flushMs: 5 });
    const results = await Promise.all(seqs.flatMap((s) => samples(s)).map((r) => direct.register(r)));
    expect(results).toHaveLength(420);
    expect(new Set(results.map((r) => r.tfFileId)).size).toBe(420);
    const { batches, items } = direct.batches;
    expect(items).toBe(420);
    expect(batches).toBeLessThanOrEqual(10); // 420 rows, 100 per statement at most: not one per row
    expect((await db.pool.query('SELECT count(*)::int AS n FROM swf_fastmon_files')).rows[0].n).toBe(420);
  });

  it('answers a redelivery, and a restarted agent, with the existing rows and writes nothing twice', async () => {
    await seedStfs(db.pool, RUN, [stfName(1)]);
    const first = await dbRegistrar();
    const created = await Promise.all(samples(1).map((r) => first.register(r)));
    // The same STF twice at once, and once more: same ids, created false.
    const [again, twice] = await Promise.all([
      Promise.all(samples(1).map((r) => first.register(r))),
      Promise.all(samples(1).map((r) => first.register(r))),
    ]);
    expect(again.map((r) => r.tfFileId)).toEqual(created.map((r) => r.tfFileId));
    expect(twice.map((r) => r.tfFileId)).toEqual(created.map((r) => r.tfFileId));
    expect([...again, ...twice].every((r) => !r.created)).toBe(true);
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const restarted = await dbRegistrar();
    const afterRestart = await Promise.all(samples(1).map((r) => restarted.register(r)));
    expect(afterRestart.map((r) => r.tfFileId)).toEqual(created.map((r) => r.tfFileId));
    expect((await db.pool.query('SELECT count(*)::int AS n FROM swf_fastmon_files')).rows[0].n).toBe(7);
  });

  it('keeps the existing row and logs REGISTRATION_CONFLICT when a sample comes back with another range', async () => {
    await seedStfs(db.pool, RUN, [stfName(1)]);
    const logs = captureLogs();
    const direct = await dbRegistrar({}, logs);
    const created = await Promise.all(samples(1).map((r) => direct.register(r)));
    const shifted = await Promise.all(samples(1, 3).map((r) => direct.register(r)));
    expect(shifted.map((r) => r.tfFileId)).toEqual(created.map((r) => r.tfFileId));
    const conflicts = logs.records().filter((r) => r.code === 'REGISTRATION_CONFLICT');
    expect(conflicts).toHaveLength(7);
    expect(String(conflicts[0]?.conflict)).toMatch(/^range \[0, 9\] != \[3, 12\]$/);
    const { rows } = await db.pool.query('SELECT tf_first FROM swf_fastmon_files ORDER BY tf_filename');
    expect(rows.map((r) => r.tf_first)).toEqual([0, 20, 40, 60, 80, 100, 120]);
  });

  it("refuses a sample of an unknown STF as swf-monitor's 400 does, without failing its neighbours", async () => {
    await seedStfs(db.pool, RUN, [stfName(1)]);
    const direct = await dbRegistrar({ flushMs: 20 });
    const settled = await Promise.allSettled([
      ...samples(1).map((r) => direct.register(r)),
      ...samples(9).map((r) => direct.register(r)),
    ]);
    expect(direct.batches.batches).toBe(1); // both STFs in one statement
    expect(settled.slice(0, 7).every((s) => s.status === 'fulfilled')).toBe(true);
    for (const s of settled.slice(7)) {
      expect(s.status).toBe('rejected');
      const err = (s as PromiseRejectedResult).reason;
      expect(isFastmonError(err, 'MONITOR_REJECTED')).toBe(true);
      expect(err.details).toEqual({
        method: 'SQL',
        status: 400,
        response: { stf_file: [`Object with stf_filename=${stfName(9)} does not exist.`] },
      });
    }
    // The same refusal the REST path gives, from the double that enforces swf-monitor's rules.
    const rest = restRegistrar();
    const viaRest = await rest.register(samples(9)[0] as SampleRecord).catch((e) => e);
    expect(viaRest.code).toBe('MONITOR_REJECTED');
    expect(viaRest.details.response.stf_file).toEqual([
      `Object with stf_filename=${stfName(9)} does not exist.`,
    ]);
  });

  it('rejects only the bad row of a batch the database refuses, and writes the others', async () => {
    await seedStfs(db.pool, RUN, [stfName(1), stfName(2)]);
    const direct = await dbRegistrar({ flushMs: 20 });
    const bad = { ...(samples(2)[3] as SampleRecord), metadata: { note: 'nul \u0000 byte' } };
    const tooLong = { ...(samples(2)[4] as SampleRecord), checksum: 'x'.repeat(65) };
    const records = [...samples(1), bad, tooLong, samples(2)[5] as SampleRecord];
    const settled = await Promise.allSettled(records.map((r) => direct.register(r)));
    expect(settled.map((s) => s.status)).toEqual([
      ...Array(7).fill('fulfilled'),
      'rejected',
      'rejected',
      'fulfilled',
    ]);
    const reasons = settled
      .filter((s) => s.status === 'rejected')
      .map((s) => (s as PromiseRejectedResult).reason);
    expect(reasons.every((e) => isFastmonError(e, 'MONITOR_REJECTED'))).toBe(true);
    expect(reasons[1].details.response.checksum).toEqual([
      'Ensure this field has no more than 64 characters.',
    ]);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM swf_fastmon_files')).rows[0].n).toBe(8);
  });

  it('fails the samples as MONITOR_UNAVAILABLE while the database is down, and works again after', async () => {
    await seedStfs(db.pool, RUN, [stfName(1), stfName(2)]);
    const target = new URL(db.url);
    const proxy = await startTcpProxy(target.hostname, Number(target.port));
    try {
      const via = new URL(db.url);
      via.port = String(proxy.port);
      const logs = captureLogs();
      const direct = await dbRegistrar({ url: via.toString(), timeoutMs: 1000 }, logs);
      await Promise.all(samples(1).map((r) => direct.register(r)));
      proxy.cut();
      const settled = await Promise.allSettled(samples(2).map((r) => direct.register(r)));
      for (const s of settled) {
        expect(s.status).toBe('rejected');
        expect((s as PromiseRejectedResult).reason.code).toBe('MONITOR_UNAVAILABLE');
        expect((s as PromiseRejectedResult).reason.message).not.toContain(target.password);
      }
      proxy.restore();
      const back = await Promise.all(samples(2).map((r) => direct.register(r)));
      expect(back.every((r) => r.created)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('fails the samples as MONITOR_UNAVAILABLE when the database does not answer in time', async () => {
    await seedStfs(db.pool, RUN, [stfName(1)]);
    const direct = await dbRegistrar({ timeoutMs: 400 });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE swf_fastmon_files IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const settled = await Promise.allSettled(samples(1).map((r) => direct.register(r)));
      expect(Date.now() - started).toBeLessThan(5000);
      for (const s of settled) {
        expect(s.status).toBe('rejected');
        const err = (s as PromiseRejectedResult).reason;
        expect(err.code).toBe('MONITOR_UNAVAILABLE');
        expect(err.details).toEqual({ sqlstate: '57014' }); // canceled by statement_timeout
      }
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    const back = await Promise.all(samples(1).map((r) => direct.register(r)));
    expect(back.every((r) => r.created)).toBe(true);
  });
});

describe('the outbox replayed into PostgreSQL', () => {
  it("drains many STFs' samples in a few shared statements, announcing them in order, reusing rows already written", async () => {
    const seqs = Array.from({ length: 40 }, (_, i) => i + 1);
    await seedStfs(db.pool, RUN, seqs.map(stfName));
    const direct = await dbRegistrar();
    // The first STFs' rows went in before the outage (a commit that timed out but was made).
    const before = await Promise.all(samples(1).map((r) => direct.register(r)));
    const records = seqs.flatMap((s) => samples(s));
    const outbox = await outboxOf(records);
    const statementsBefore = direct.batches.batches;
    const announced: { tfFilename: string; tfFileId: string }[] = [];
    const drainer = new OutboxDrainer(
      outbox,
      {
        prepare: async (payload) => {
          const record = payload as SampleRecord;
          return { tfFilename: record.tfFilename, tfFileId: (await direct.register(record)).tfFileId };
        },
        finish: async (registered) => void announced.push(registered),
      },
      { batchSize: 500 },
    );
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(0), { timeout: 20_000 });
    await drainer.close();
    await outbox.close();
    expect(announced.map((a) => a.tfFilename)).toEqual(records.map((r) => r.tfFilename));
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(280);
    const ids = new Map(rows.map((r) => [r.tf_filename, r.tf_file_id]));
    for (const a of announced) expect(a.tfFileId).toBe(ids.get(a.tfFilename));
    expect(announced.slice(0, 7).map((a) => a.tfFileId)).toEqual(before.map((r) => r.tfFileId));
    // 280 entries in one batch of the drainer: one statement, not one per entry.
    expect(direct.batches.batches - statementsBefore).toBe(1);
  });

  it("a sample the database refuses ends its outbox entry, as swf-monitor's 400 does (not retried forever)", async () => {
    const direct = await dbRegistrar();
    const refusal = await direct.register(samples(2)[0] as SampleRecord).catch((err: unknown) => err);
    expect(isFastmonError(refusal, 'MONITOR_REJECTED')).toBe(true);
    expect(isDefinitiveRefusal(refusal)).toBe(true);
  });
});

describe('the start-up check of the tables', () => {
  const broken: Array<[string, (ddl: string) => string, RegExp]> = [
    [
      'a column of another type',
      (d) => d.replace('tf_first integer NULL', 'tf_first bigint NULL'),
      /table swf_fastmon_files, column tf_first: is bigint, fastmon writes integer/,
    ],
    [
      'a missing column',
      (d) =>
        d.replace(
          '  checksum varchar(64) NULL,\n  status varchar(20) NOT NULL,\n  metadata jsonb NULL,\n  created_at',
          '  status varchar(20) NOT NULL,\n  metadata jsonb NULL,\n  created_at',
        ),
      /table swf_fastmon_files, column checksum: missing/,
    ],
    [
      'a new NOT NULL column without a default',
      (d) => d.replace('  tf_last integer NULL,', '  tf_last integer NULL,\n  priority integer NOT NULL,'),
      /table swf_fastmon_files, column priority: NOT NULL without a default/,
    ],
    [
      'a shorter varchar',
      (d) =>
        d.replace(
          'stf_filename varchar(255) NOT NULL CONSTRAINT',
          'stf_filename varchar(100) NOT NULL CONSTRAINT',
        ),
      /table swf_stf_files, column stf_filename: varchar\(100\) is shorter/,
    ],
    [
      'a name no longer unique',
      (d) =>
        d.replace(
          'tf_filename varchar(255) NOT NULL CONSTRAINT swf_fastmon_files_tf_filename_key UNIQUE',
          'tf_filename varchar(255) NOT NULL',
        ),
      /table swf_fastmon_files, column tf_filename: not unique/,
    ],
    [
      'a missing table',
      (d) => d.slice(0, d.indexOf('CREATE TABLE swf_fastmon_files')),
      /table swf_fastmon_files: not found/,
    ],
  ];

  for (const [what, change, message] of broken) {
    it(`refuses to start on ${what}, naming the table and column`, async () => {
      const changed = change(MONITOR_DDL);
      expect(changed).not.toBe(MONITOR_DDL);
      const other = await createTestDatabase(changed);
      try {
        const err = await DbRegistrar.open({
          url: other.url,
          connections: 1,
          timeoutMs: 2000,
          batchRows: 10,
          flushMs: 1,
          logger: captureLogs().logger,
        }).catch((e) => e);
        expect(err.code).toBe('MONITOR_DB_SCHEMA');
        expect(err.message).toMatch(message);
        // It never alters swf-monitor's tables to fit.
        const { rows } = await other.pool.query(
          "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = 'public'",
        );
        const fresh = await createTestDatabase(changed);
        const ref = await fresh.pool.query(
          "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = 'public'",
        );
        await fresh.drop();
        expect(rows[0].n).toBe(ref.rows[0].n);
      } finally {
        await other.drop();
      }
    });
  }

  it('waits for a database that does not answer yet at start, and gives up when the agent is stopped', async () => {
    const target = new URL(db.url);
    const proxy = await startTcpProxy(target.hostname, Number(target.port));
    try {
      const via = new URL(db.url);
      via.port = String(proxy.port);
      const options = { url: via.toString(), connections: 1, timeoutMs: 1000, batchRows: 10, flushMs: 1 };
      proxy.cut();
      const logs = captureLogs();
      const opening = DbRegistrar.open({ ...options, logger: logs.logger });
      await new Promise((r) => setTimeout(r, 1200));
      expect(logs.find((r) => r.code === 'MONITOR_UNAVAILABLE')).toBeDefined();
      proxy.restore();
      const registrar = await opening;
      opened.push(registrar);

      proxy.cut();
      const stop = new AbortController();
      const abandoned = DbRegistrar.open({ ...options, logger: captureLogs().logger }, stop.signal).catch(
        (e) => e,
      );
      await new Promise((r) => setTimeout(r, 300));
      stop.abort();
      expect((await abandoned).code).toBe('SHUTDOWN');
    } finally {
      await proxy.close();
    }
  });

  it('refuses a wrong password at once, without showing it', async () => {
    const url = new URL(db.url);
    url.password = 'not-the-password-123';
    rememberSecret('not-the-password-123');
    const logs = captureLogs();
    const err = await DbRegistrar.open({
      url: url.toString(),
      connections: 1,
      timeoutMs: 2000,
      batchRows: 10,
      flushMs: 1,
      logger: logs.logger,
    }).catch((e) => e);
    expect(err.code).toBe('MONITOR_UNAVAILABLE');
    expect(err.message).toMatch(/password authentication failed/);
    expect(err.message).not.toContain('not-the-password-123');
    expect(err.message).not.toContain(new URL(db.url).password);
  });
});
