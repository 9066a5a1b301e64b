// swf-monitor's PostgreSQL, written directly: the connection pool, failure classes and the start-up check.

import { createRequire } from 'node:module';
import type pg from 'pg';
import { FastmonError, messageOf } from '../errors.js';
import { redactText, registerSecret } from '../log/redact.js';

export interface MonitorDbOptions {
  /** `postgresql://user:password@host:port/database` (libpq URL; `?sslmode=` and friends allowed). */
  url: string;
  /** Pool size: batches written at the same time. */
  connections: number;
  /** A statement (or a connection attempt) taking longer fails as MONITOR_UNAVAILABLE. */
  timeoutMs: number;
}

/** Checks the URL's shape and registers its password as a secret; throws CONFIG_INVALID. */
export function checkMonitorDbUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FastmonError(
      'CONFIG_INVALID',
      'monitor_db.url: not a URL (expected a postgresql:// URL with user, password, host, port, database)',
    );
  }
  if (parsed.password) {
    registerSecret(parsed.password);
    registerSecret(decodeURIComponent(parsed.password));
  }
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') {
    throw new FastmonError('CONFIG_INVALID', `monitor_db.url: scheme ${parsed.protocol} is not postgresql:`);
  }
  if (!parsed.hostname || parsed.pathname.length <= 1) {
    throw new FastmonError('CONFIG_INVALID', 'monitor_db.url: needs a host and a database name');
  }
}

/** The URL as it may be shown: host, port and database, never the password. */
export function describeMonitorDb(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

export function openMonitorDb(options: MonitorDbOptions): pg.Pool {
  checkMonitorDbUrl(options.url);
  // Loaded here: pg and its parsers are about 3 MB of heap an agent without SWF_MONITOR_DB_URL never uses.
  const { Pool } = createRequire(import.meta.url)('pg') as typeof pg;
  const pool = new Pool({
    connectionString: options.url,
    max: options.connections,
    connectionTimeoutMillis: options.timeoutMs,
    // The server cancels a statement stuck on a lock; the client gives up a little later on a dead link.
    statement_timeout: options.timeoutMs,
    query_timeout: options.timeoutMs + 1000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'swf-fastmon',
  });
  // An idle connection dropped by the server emits here; without a listener it would crash the process.
  pool.on('error', () => {});
  return pool;
}

/**
 * SQLSTATE classes that say something about a row (bad data, a constraint): the batch is split to
 * find the row. Everything else (connection, timeout, shutdown, resources) is the database being
 * unavailable: the samples go to the outbox, as with an unreachable swf-monitor.
 */
export function isRowError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}

/** A database failure as the agent's error: MONITOR_UNAVAILABLE, message without secrets. */
export function unavailable(err: unknown, what: string): FastmonError {
  const code = (err as { code?: unknown })?.code;
  return new FastmonError(
    'MONITOR_UNAVAILABLE',
    `swf-monitor database: ${what}: ${redactText(messageOf(err))}`,
    typeof code === 'string' ? { sqlstate: code } : undefined,
  );
}

/** Failures that cannot heal by waiting: wrong password, missing database or role. */
export function isPermanentConnectError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(28|3D)/.test(code);
}

type Column = { type: string; length?: number };

/** What fastmon writes, per table: column → information_schema data_type (and varchar length). */
export const WRITTEN_COLUMNS: Record<string, Record<string, Column>> = {
  swf_runs: {
    run_id: { type: 'integer' },
    run_number: { type: 'integer' },
    start_time: { type: 'timestamp with time zone' },
    run_conditions: { type: 'jsonb' },
  },
  swf_stf_files: {
    file_id: { type: 'uuid' },
    machine_state: { type: 'character varying', length: 64 },
    stf_filename: { type: 'character varying', length: 255 },
    file_size_bytes: { type: 'bigint' },
    checksum: { type: 'character varying', length: 64 },
    created_at: { type: 'timestamp with time zone' },
    status: { type: 'character varying', length: 20 },
    metadata: { type: 'jsonb' },
    workflow_id: { type: 'uuid' },
    daq_state: { type: 'character varying', length: 20 },
    daq_substate: { type: 'character varying', length: 20 },
    workflow_status: { type: 'character varying', length: 30 },
    tf_count: { type: 'integer' },
    run_id: { type: 'integer' },
  },
  swf_fastmon_files: {
    tf_file_id: { type: 'uuid' },
    tf_filename: { type: 'character varying', length: 255 },
    file_size_bytes: { type: 'bigint' },
    checksum: { type: 'character varying', length: 64 },
    status: { type: 'character varying', length: 20 },
    metadata: { type: 'jsonb' },
    created_at: { type: 'timestamp with time zone' },
    updated_at: { type: 'timestamp with time zone' },
    tf_count: { type: 'integer' },
    tf_first: { type: 'integer' },
    tf_last: { type: 'integer' },
    stf_file_id: { type: 'uuid' },
  },
};

/** The unique keys the ON CONFLICT clauses rely on. */
const UNIQUE_KEYS: Record<string, string> = {
  swf_runs: 'run_number',
  swf_stf_files: 'stf_filename',
  swf_fastmon_files: 'tf_filename',
};

interface ColumnRow {
  table_name: string;
  column_name: string;
  data_type: string;
  character_maximum_length: number | null;
  is_nullable: 'YES' | 'NO';
  column_default: string | null;
  is_identity: 'YES' | 'NO';
}

/**
 * Reads the tables' columns from information_schema and returns what differs from what fastmon
 * writes, one line per problem naming the table and the column (empty: all is as expected). A
 * varchar longer than expected is fine (every value fastmon checked still fits); shorter is not.
 * A NOT NULL column fastmon does not know, without a default, would fail every insert.
 */
export async function schemaProblems(db: pg.Pool | pg.ClientBase): Promise<string[]> {
  const tables = Object.keys(WRITTEN_COLUMNS);
  const { rows } = await db.query<ColumnRow>(
    `SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default, is_identity
       FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = ANY($1::text[])`,
    [tables],
  );
  const unique = await db.query<{ table_name: string; column_name: string }>(
    `SELECT t.relname AS table_name, a.attname AS column_name
       FROM pg_index i
       JOIN pg_class t ON t.oid = i.indrelid
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
      WHERE i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL
        AND t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1::text[])`,
    [tables],
  );
  const problems: string[] = [];
  for (const table of tables) {
    const present = new Map(rows.filter((r) => r.table_name === table).map((r) => [r.column_name, r]));
    if (present.size === 0) {
      problems.push(`table ${table}: not found in the connection's current schema`);
      continue;
    }
    for (const [name, want] of Object.entries(WRITTEN_COLUMNS[table] ?? {})) {
      const got = present.get(name);
      if (!got) {
        problems.push(`table ${table}, column ${name}: missing (fastmon writes it as ${want.type})`);
      } else if (got.data_type !== want.type) {
        problems.push(`table ${table}, column ${name}: is ${got.data_type}, fastmon writes ${want.type}`);
      } else if (want.length !== undefined && (got.character_maximum_length ?? Infinity) < want.length) {
        problems.push(
          `table ${table}, column ${name}: varchar(${got.character_maximum_length}) is shorter than the ${want.length} characters fastmon writes`,
        );
      }
    }
    for (const got of present.values()) {
      const known = Object.hasOwn(WRITTEN_COLUMNS[table] ?? {}, got.column_name);
      if (!known && got.is_nullable === 'NO' && got.column_default === null && got.is_identity !== 'YES') {
        problems.push(
          `table ${table}, column ${got.column_name}: NOT NULL without a default, and fastmon does not write it`,
        );
      }
    }
    const key = UNIQUE_KEYS[table] as string;
    if (!unique.rows.some((u) => u.table_name === table && u.column_name === key)) {
      problems.push(`table ${table}, column ${key}: not unique (fastmon's idempotency relies on it)`);
    }
  }
  return problems;
}

/** The start-up check: throws MONITOR_DB_SCHEMA naming every table and column that differs. */
export async function checkSchema(db: pg.Pool): Promise<void> {
  const problems = await schemaProblems(db);
  if (problems.length > 0) {
    throw new FastmonError(
      'MONITOR_DB_SCHEMA',
      `swf-monitor's tables are not what fastmon writes (a migration changed them?); refusing to start: ${problems.join('; ')}`,
      { problems },
    );
  }
}
