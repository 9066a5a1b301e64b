// The client's source for a local store: its FastMonFile rows in order, then new ones as the agent commits them.

import path from 'node:path';
import Database from 'better-sqlite3';
import { FastmonError, messageOf } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import type { FastMonFileRow } from '../../monitor/rows.js';
import { type ClientMessage, never, type Source, type SourceStatus, safeDeliver } from './source.js';

export interface StoreSourceOptions {
  file: string;
  logger: Logger;
  /** How often to look for new rows (default 250 ms). */
  pollMs?: number;
}

const PAGE = 1000;

/**
 * The message a row stands for, shaped like the agent's live broadcast (codec.tfFileRegistered):
 * the catalog keeps run and agent in `metadata`, and `run_id` goes out as a string as on the wire.
 */
export function catalogRowMessage(row: FastMonFileRow): ClientMessage {
  const metadata = row.metadata ?? {};
  const runId = metadata.run_id;
  const message: ClientMessage = {
    msg_type: 'tf_file_registered',
    processed_by: metadata.processed_by ?? null,
    run_id: typeof runId === 'number' ? String(runId) : (runId ?? null),
    stf_filename: row.stf_file,
    tf_file_id: row.tf_file_id,
    tf_filename: row.tf_filename,
    tf_first: row.tf_first,
    tf_last: row.tf_last,
    tf_count: row.tf_count,
    file_size_bytes: row.file_size_bytes,
    status: row.status,
    timestamp: row.created_at ?? null,
  };
  if (row.checksum) message.checksum = row.checksum;
  return message;
}

/**
 * Reads in rowid order (the order of the commits) and polls for more: the writer is another process,
 * and WAL lets this reader look at committed rows without ever making the writer wait. Lives until
 * close(), like the broker and SSE sources.
 */
export function storeSource(o: StoreSourceOptions): Source {
  const file = path.resolve(o.file);
  const logger = o.logger.child({ source: 'catalog', catalog: file });
  const pollMs = o.pollMs ?? 250;
  let state: SourceStatus = 'disconnected';
  let db: Database.Database | null = null;
  let timer: NodeJS.Timeout | null = null;
  let delivered = 0;
  let after = 0;

  const poll = (statement: Database.Statement, onMessage: (m: ClientMessage) => void) => {
    timer = null;
    if (!db) return;
    try {
      for (;;) {
        const rows = statement.all(after, PAGE) as (FastMonFileRow & { seq: number })[];
        for (const row of rows) {
          after = row.seq;
          row.metadata = typeof row.metadata === 'string' ? JSON.parse(row.metadata) : null;
          safeDeliver(onMessage, catalogRowMessage(row), logger);
          delivered++;
        }
        if (rows.length < PAGE) break;
      }
      state = 'connected';
    } catch (err) {
      state = 'disconnected';
      logger.warn({ err: { message: messageOf(err) } }, 'cannot read the local store; trying again');
    }
    timer = setTimeout(() => poll(statement, onMessage), pollMs);
  };

  return {
    finished: never(),
    async start(onMessage) {
      if (db) return;
      state = 'connecting';
      try {
        // Read-write only so SQLite may create the WAL index when no agent has the file open; nothing is written.
        db = new Database(file, { fileMustExist: true });
        db.pragma('query_only = ON');
        const statement = db.prepare(
          `SELECT f.rowid AS seq, f.tf_file_id, s.stf_filename AS stf_file, f.tf_filename, f.file_size_bytes,
             f.checksum, f.status, f.metadata, f.tf_first, f.tf_last, f.tf_count, f.created_at, f.updated_at
           FROM fastmon_files f JOIN stf_files s ON s.file_id = f.stf_file_id
           WHERE f.rowid > ? ORDER BY f.rowid LIMIT ?`,
        );
        poll(statement, onMessage);
      } catch (err) {
        db?.close();
        db = null;
        state = 'disconnected';
        throw new FastmonError(
          'CLIENT_SOURCE_FAILED',
          `cannot read catalog ${file}: ${messageOf(err)}`,
          { file },
          { cause: err },
        );
      }
    },
    describe() {
      return `catalog ${file} (following, ${delivered} rows)`;
    },
    status() {
      return state;
    },
    async close() {
      if (timer) clearTimeout(timer);
      timer = null;
      db?.close();
      db = null;
      state = 'disconnected';
    },
  };
}
