// A fresh database per test file on the real test PostgreSQL, holding swf-monitor's tables (our DDL).

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { MONITOR_DDL } from './monitor-schema.js';
import { adminQuery, dropDatabase } from './pg-admin.js';
import { rememberSecret } from './secrets.js';

export interface TestDatabase {
  /** URL of the new database, with the test role's password. */
  url: string;
  /** Its name (fastmon_t_…). */
  name: string;
  /** A pool for the test's own reads and writes. */
  pool: pg.Pool;
  /** Drops the database (after closing the pool and ending the connections still open to it). */
  drop(): Promise<void>;
}

export function pgAvailable(): boolean {
  return inject('pgUrl') !== '';
}

/**
 * Creates `fastmon_t_<random>`; with `ddl` (the default) the tables are made from MONITOR_DDL, or
 * from the given text (a schema-mismatch test hands in a changed one).
 */
export async function createTestDatabase(ddl: string | null = MONITOR_DDL): Promise<TestDatabase> {
  const base = inject('pgUrl');
  if (!base) throw new Error('no test PostgreSQL (see test/setup/postgres.sh)');
  const baseUrl = new URL(base);
  rememberSecret(decodeURIComponent(baseUrl.password));
  const name = `fastmon_t_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  await adminQuery(base, `CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => {});
  if (ddl) await pool.query(ddl);
  return {
    url: url.toString(),
    name,
    pool,
    async drop() {
      await pool.end().catch(() => {});
      await dropDatabase(base, name);
    },
  };
}

/** A FastMonFile row as swf-monitor's API would serialize it, read from the database. */
export interface DbFastMonRow {
  tf_file_id: string;
  stf_file: string;
  tf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: string;
  metadata: unknown;
  tf_count: number | null;
  tf_first: number | null;
  tf_last: number | null;
  created_at: Date;
  updated_at: Date;
}

export async function fastmonRows(pool: pg.Pool): Promise<DbFastMonRow[]> {
  const { rows } = await pool.query<DbFastMonRow>(
    `SELECT f.tf_file_id, s.stf_filename AS stf_file, f.tf_filename, f.file_size_bytes::float8 AS file_size_bytes,
            f.checksum, f.status, f.metadata, f.tf_count, f.tf_first, f.tf_last, f.created_at, f.updated_at
       FROM swf_fastmon_files f JOIN swf_stf_files s ON s.file_id = f.stf_file_id
      ORDER BY f.tf_filename`,
  );
  return rows;
}

/** Seeds a Run and its StfFile rows, as a data agent would have registered them. */
export async function seedStfs(pool: pg.Pool, runNumber: number, names: string[]): Promise<void> {
  await pool.query(
    `INSERT INTO swf_runs (run_number, start_time) VALUES ($1, now()) ON CONFLICT (run_number) DO NOTHING`,
    [runNumber],
  );
  await pool.query(
    `INSERT INTO swf_stf_files (file_id, machine_state, stf_filename, created_at, status, run_id)
     SELECT gen_random_uuid(), 'physics', n, now(), 'registered', r.run_id
       FROM unnest($1::text[]) AS n, swf_runs r WHERE r.run_number = $2`,
    [names, runNumber],
  );
}
