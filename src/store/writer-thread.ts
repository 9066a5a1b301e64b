// The thread that owns the store's write connection: migrations, imports, and batches of writes, each one transaction.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { type ErrorCode, type ErrorInfo, FastmonError, isFastmonError, messageOf } from '../errors.js';
import { importLegacy, type LegacyFiles } from './legacy.js';
import type { OpResult, StoreOp } from './ops.js';
import { StoreWrites } from './ops.js';
import { migrate } from './schema.js';

export interface WriterData {
  file: string;
  legacy: LegacyFiles;
}

export type ToWriter = { type: 'batch'; id: number; ops: StoreOp[] } | { type: 'close' };

export type OpOutcome = { ok: true; value: OpResult } | { ok: false; error: ErrorInfo };

export type FromWriter =
  | {
      type: 'ready';
      version: number;
      imports: import('./legacy.js').ImportReport[];
      outbox: { depth: number; bytes: number };
    }
  | { type: 'failed'; error: ErrorInfo }
  | { type: 'done'; id: number; outcomes: OpOutcome[] }
  | { type: 'closed' };

const CODE_OF: Record<StoreOp['op'], ErrorCode> = {
  register: 'CATALOG_WRITE_FAILED',
  ensureStf: 'CATALOG_WRITE_FAILED',
  ledgerRecord: 'LEDGER_WRITE_FAILED',
  ledgerForget: 'LEDGER_WRITE_FAILED',
  outboxAdd: 'OUTBOX_WRITE_FAILED',
  outboxRemove: 'OUTBOX_WRITE_FAILED',
};

/** SQLite's result codes an operator can act on, in words. */
function reason(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_FULL') return `disk full (${code})`;
  if (typeof code === 'string' && code.startsWith('SQLITE_IOERR')) return `I/O error (${code})`;
  if (code === 'SQLITE_READONLY') return `read-only (${code})`;
  if (code === 'SQLITE_BUSY') return `locked by another process (${code})`;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') return `not a usable SQLite database (${code})`;
  return typeof code === 'string' ? `${messageOf(err)} (${code})` : messageOf(err);
}

function failure(op: StoreOp, file: string, err: unknown): ErrorInfo {
  const sqlite = (err as { code?: unknown }).code;
  return {
    code: CODE_OF[op.op],
    message: `cannot write to the local store ${file}: ${reason(err)}`,
    details: { store: file, ...(typeof sqlite === 'string' ? { sqlite } : {}) },
  };
}

function open(data: WriterData): { db: Database.Database; version: number } {
  let db: Database.Database | undefined;
  try {
    mkdirSync(path.dirname(data.file), { recursive: true });
    db = new Database(data.file);
    // WAL: readers (the main thread, `client --catalog`, sqlite3) never wait for the writer.
    db.pragma('journal_mode = WAL');
    // FULL: the WAL is fsync'd at every commit, so a committed batch survives a power cut, not only kill -9.
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    const version = migrate(db, data.file);
    return { db, version };
  } catch (err) {
    db?.close();
    if (isFastmonError(err)) throw err;
    throw new FastmonError('STORE_OPEN_FAILED', `cannot open the local store ${data.file}: ${reason(err)}`, {
      store: data.file,
    });
  }
}

function runBatch(db: Database.Database, writes: StoreWrites, file: string, ops: StoreOp[]): OpOutcome[] {
  const now = new Date().toISOString();
  const outcomes: OpOutcome[] = [];
  try {
    db.exec('BEGIN IMMEDIATE');
    for (const op of ops) {
      try {
        outcomes.push({ ok: true, value: writes.apply(op, now) });
      } catch (err) {
        // SQLite undid this statement only, unless the error ended the transaction (a full disk may).
        if (!db.inTransaction) throw err;
        outcomes.push({ ok: false, error: failure(op, file, err) });
      }
    }
    db.exec('COMMIT');
    return outcomes;
  } catch (err) {
    if (db.inTransaction) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // the transaction is gone either way
      }
    }
    writes.forget();
    return ops.map((op) => ({ ok: false, error: failure(op, file, err) }));
  }
}

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as WriterData;
  const send = (message: FromWriter) => port.postMessage(message);
  let db: Database.Database;
  let version: number;
  let imports: import('./legacy.js').ImportReport[];
  try {
    ({ db, version } = open(data));
    try {
      imports = await importLegacy(db, data.legacy);
    } catch (err) {
      db.close();
      throw err;
    }
  } catch (err) {
    const error: ErrorInfo = isFastmonError(err)
      ? err.toInfo()
      : { code: 'STORE_OPEN_FAILED', message: `cannot import into ${data.file}: ${reason(err)}` };
    send({ type: 'failed', error });
    port.close();
    return;
  }
  const outbox = db
    .prepare('SELECT count(*) AS depth, coalesce(sum(length(CAST(payload AS BLOB))), 0) AS bytes FROM outbox')
    .get() as {
    depth: number;
    bytes: number;
  };
  const writes = new StoreWrites(db);
  port.on('message', (message: ToWriter) => {
    if (message.type === 'batch') {
      send({ type: 'done', id: message.id, outcomes: runBatch(db, writes, data.file, message.ops) });
      return;
    }
    try {
      // Folds the WAL back into the database file, so a stopped agent leaves one file behind.
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // a reader still open elsewhere keeps the WAL; SQLite checkpoints it on a later open
    }
    db.close();
    send({ type: 'closed' });
    port.close();
  });
  send({ type: 'ready', version, imports, outbox });
}

void main();
