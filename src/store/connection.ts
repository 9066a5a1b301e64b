// The store's write connection: opened the same way on the main thread (at start) and on the writer thread.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import { migrate } from './schema.js';

/** SQLite's result codes an operator can act on, in words. */
export function reason(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_FULL') return `disk full (${code})`;
  if (typeof code === 'string' && code.startsWith('SQLITE_IOERR')) return `I/O error (${code})`;
  if (code === 'SQLITE_READONLY') return `read-only (${code})`;
  if (code === 'SQLITE_BUSY') return `locked by another process (${code})`;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') return `not a usable SQLite database (${code})`;
  return typeof code === 'string' ? `${messageOf(err)} (${code})` : messageOf(err);
}

/** Opens `file` for writing (created with its directory when missing) and migrates it to the current schema. */
export function openForWriting(file: string): { db: Database.Database; version: number } {
  let db: Database.Database | undefined;
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    db = new Database(file);
    // WAL: readers (the main thread, `client --catalog`, sqlite3) never wait for the writer.
    db.pragma('journal_mode = WAL');
    // FULL: the WAL is fsync'd at every commit, so a committed batch survives a power cut, not only kill -9.
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    const version = migrate(db, file);
    return { db, version };
  } catch (err) {
    db?.close();
    if (isFastmonError(err)) throw err;
    throw new FastmonError('STORE_OPEN_FAILED', `cannot open the local store ${file}: ${reason(err)}`, {
      store: file,
    });
  }
}

/** Closes the write connection, folding the WAL back into the database file first. */
export function closeWriting(db: Database.Database): void {
  try {
    // A stopped agent leaves one file behind.
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    // a reader still open elsewhere keeps the WAL; SQLite checkpoints it on a later open
  }
  db.close();
}
