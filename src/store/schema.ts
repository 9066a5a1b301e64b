// The local store's schema: migrations by version number, recorded in SQLite's PRAGMA user_version.

import type Database from 'better-sqlite3';
import { FastmonError } from '../errors.js';

/**
 * Migration N (index N-1) takes the database from version N-1 to N; applied in one transaction each.
 * Never edit a released migration: add the next one. Table and column names follow swf-monitor's
 * (`swf_runs`, `swf_stf_files`, `swf_fastmon_files`) so rows copy across as they are.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    run_number INTEGER NOT NULL UNIQUE,
    start_time TEXT NOT NULL,
    end_time TEXT,
    run_conditions TEXT
  );
  -- run_id is NULL when a sample's STF came without a run number (swf-monitor would refuse it).
  CREATE TABLE stf_files (
    file_id TEXT PRIMARY KEY,
    machine_state TEXT NOT NULL,
    stf_filename TEXT NOT NULL UNIQUE,
    file_size_bytes INTEGER,
    checksum TEXT,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT,
    workflow_id TEXT,
    daq_state TEXT,
    daq_substate TEXT,
    workflow_status TEXT,
    tf_count INTEGER,
    run_id INTEGER REFERENCES runs (run_id)
  );
  CREATE INDEX stf_files_run_id ON stf_files (run_id);
  -- The implicit rowid gives insertion order: what 'client --catalog' follows.
  CREATE TABLE fastmon_files (
    tf_file_id TEXT PRIMARY KEY,
    tf_filename TEXT NOT NULL UNIQUE,
    file_size_bytes INTEGER,
    checksum TEXT,
    status TEXT NOT NULL,
    metadata TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    tf_count INTEGER,
    tf_first INTEGER,
    tf_last INTEGER,
    stf_file_id TEXT NOT NULL REFERENCES stf_files (file_id)
  );
  CREATE INDEX fastmon_files_stf_file_id ON fastmon_files (stf_file_id);
  -- mtime_ms is the double stat() gives, compared exactly.
  CREATE TABLE ledger (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ms REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sampled', 'skipped', 'failed')),
    recorded_at TEXT NOT NULL
  ) WITHOUT ROWID;
  -- AUTOINCREMENT: a sequence number is never reused, even after the newest entries were removed.
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    added_at TEXT NOT NULL
  );
  CREATE TABLE imports (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    imported_at TEXT NOT NULL
  );
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the schema to SCHEMA_VERSION; returns the version found. A newer database is refused. */
export function migrate(db: Database.Database, file: string): number {
  const found = db.pragma('user_version', { simple: true }) as number;
  if (found > SCHEMA_VERSION) {
    throw new FastmonError(
      'STORE_OPEN_FAILED',
      `${file} has schema version ${found}, newer than this swf-fastmon's ${SCHEMA_VERSION}: upgrade swf-fastmon`,
      { store: file, version: found },
    );
  }
  for (let version = found; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
  return found;
}
