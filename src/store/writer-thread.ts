// The thread that owns the store's write connection once there are writes: batches of them, each one transaction.

import { parentPort, workerData } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { type ErrorCode, type ErrorInfo, isFastmonError } from '../errors.js';
import { closeWriting, openForWriting, reason } from './connection.js';
import type { OpResult, StoreOp } from './ops.js';
import { StoreWrites } from './ops.js';

export interface WriterData {
  file: string;
}

/** A batch's ops and its outcomes travel as JSON text (store.ts says why). */
export type ToWriter = { type: 'batch'; id: number; ops: string } | { type: 'close' };

export type OpOutcome = { ok: true; value: OpResult } | { ok: false; error: ErrorInfo };

export type FromWriter =
  | { type: 'ready' }
  | { type: 'failed'; error: ErrorInfo }
  | { type: 'done'; id: number; outcomes: string }
  | { type: 'closed' };

const CODE_OF: Record<StoreOp['op'], ErrorCode> = {
  register: 'CATALOG_WRITE_FAILED',
  ensureStf: 'CATALOG_WRITE_FAILED',
  ledgerRecord: 'LEDGER_WRITE_FAILED',
  ledgerForget: 'LEDGER_WRITE_FAILED',
  outboxAdd: 'OUTBOX_WRITE_FAILED',
  outboxRemove: 'OUTBOX_WRITE_FAILED',
};

function failure(op: StoreOp, file: string, err: unknown): ErrorInfo {
  const sqlite = (err as { code?: unknown }).code;
  return {
    code: CODE_OF[op.op],
    message: `cannot write to the local store ${file}: ${reason(err)}`,
    details: { store: file, ...(typeof sqlite === 'string' ? { sqlite } : {}) },
  };
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

function main(): void {
  const port = parentPort!;
  const data = workerData as WriterData;
  const send = (message: FromWriter) => port.postMessage(message);
  let db: Database.Database;
  try {
    // The main thread opened and migrated the file already (store.ts): this is a second open of it.
    ({ db } = openForWriting(data.file));
  } catch (err) {
    const error: ErrorInfo = isFastmonError(err)
      ? err.toInfo()
      : { code: 'STORE_OPEN_FAILED', message: `cannot open the local store ${data.file}: ${reason(err)}` };
    send({ type: 'failed', error });
    port.close();
    return;
  }
  const writes = new StoreWrites(db);
  port.on('message', (message: ToWriter) => {
    if (message.type === 'batch') {
      const outcomes = runBatch(db, writes, data.file, JSON.parse(message.ops) as StoreOp[]);
      send({ type: 'done', id: message.id, outcomes: JSON.stringify(outcomes) });
      return;
    }
    closeWriting(db);
    send({ type: 'closed' });
    port.close();
  });
  send({ type: 'ready' });
}

main();
