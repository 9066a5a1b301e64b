// The writes the store's thread runs, as plain data (they cross a thread boundary) and their SQL.

import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';

export type LedgerOutcome = 'sampled' | 'skipped' | 'failed';

/** A FastMonFile row to insert; metadata is JSON text. */
export interface SampleRow {
  stf_file: string;
  tf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: string;
  metadata: string;
  tf_first: number;
  tf_last: number;
  tf_count: number;
  /** The run of the STF, for the placeholder StfFile row a sample of an unknown STF gets. */
  run_number: number | null;
}

export interface StfRow {
  stf_filename: string;
  run_number: number;
  file_size_bytes: number | null;
  checksum: string | null;
  tf_count: number | null;
  machine_state: string;
  daq_substate: string | null;
  metadata: string;
}

export type StoreOp =
  | { op: 'register'; row: SampleRow }
  | { op: 'ensureStf'; stf: StfRow }
  | { op: 'ledgerRecord'; path: string; size: number; mtimeMs: number; outcome: LedgerOutcome }
  | { op: 'ledgerForget'; path: string }
  | { op: 'outboxAdd'; payload: string }
  | { op: 'outboxRemove'; seq: number };

export interface RegisterResult {
  tfFileId: string;
  created: boolean;
  /** The row that was there already (created false), for the conflict check. */
  existing?: { stf_file: string; tf_first: number | null; tf_last: number | null };
}

export interface OutboxAddResult {
  seq: number;
  bytes: number;
}

/** Bytes of the removed entry's payload; 0 when there was no such entry. */
export interface OutboxRemoveResult {
  bytes: number;
}

export type OpResult = RegisterResult | OutboxAddResult | OutboxRemoveResult | null;

/** Prepared once per connection; run inside the batch's transaction. */
export class StoreWrites {
  private readonly insertRun;
  private readonly runId;
  private readonly insertStf;
  private readonly stfId;
  private readonly insertSample;
  private readonly existingSample;
  private readonly ledgerPut;
  private readonly ledgerDelete;
  private readonly outboxInsert;
  private readonly outboxDelete;
  /** The last STF resolved: the samples of one STF come one after the other. */
  private lastStf: { name: string; id: string } | null = null;
  /** The last run resolved: a scan's STFs come run after run (two statements saved per StfFile row). */
  private lastRun: { number: number; id: number } | null = null;

  constructor(db: Database.Database) {
    this.insertRun = db.prepare(
      'INSERT INTO runs (run_number, start_time) VALUES (?, ?) ON CONFLICT (run_number) DO NOTHING',
    );
    this.runId = db.prepare('SELECT run_id FROM runs WHERE run_number = ?').pluck();
    this.insertStf = db.prepare(
      `INSERT INTO stf_files (file_id, machine_state, stf_filename, file_size_bytes, checksum, created_at,
         status, metadata, daq_substate, tf_count, run_id)
       VALUES (@file_id, @machine_state, @stf_filename, @file_size_bytes, @checksum, @created_at,
         'registered', @metadata, @daq_substate, @tf_count, @run_id)
       ON CONFLICT (stf_filename) DO UPDATE SET run_id = coalesce(stf_files.run_id, excluded.run_id)`,
    );
    this.stfId = db.prepare('SELECT file_id FROM stf_files WHERE stf_filename = ?').pluck();
    this.insertSample = db.prepare(
      `INSERT INTO fastmon_files (tf_file_id, tf_filename, file_size_bytes, checksum, status, metadata,
         created_at, updated_at, tf_count, tf_first, tf_last, stf_file_id)
       VALUES (@tf_file_id, @tf_filename, @file_size_bytes, @checksum, @status, @metadata,
         @now, @now, @tf_count, @tf_first, @tf_last, @stf_file_id)
       ON CONFLICT (tf_filename) DO NOTHING`,
    );
    this.existingSample = db.prepare(
      `SELECT f.tf_file_id, s.stf_filename AS stf_file, f.tf_first, f.tf_last
       FROM fastmon_files f JOIN stf_files s ON s.file_id = f.stf_file_id WHERE f.tf_filename = ?`,
    );
    this.ledgerPut = db.prepare(
      `INSERT INTO ledger (path, size, mtime_ms, outcome, recorded_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms,
         outcome = excluded.outcome, recorded_at = excluded.recorded_at`,
    );
    this.ledgerDelete = db.prepare('DELETE FROM ledger WHERE path = ?');
    this.outboxInsert = db.prepare('INSERT INTO outbox (payload, added_at) VALUES (?, ?)');
    this.outboxDelete = db
      .prepare('DELETE FROM outbox WHERE seq = ? RETURNING length(CAST(payload AS BLOB))')
      .pluck();
  }

  apply(op: StoreOp, now: string): OpResult {
    switch (op.op) {
      case 'register':
        return this.register(op.row, now);
      case 'ensureStf':
        this.ensureStf(op.stf, now);
        return null;
      case 'ledgerRecord':
        this.ledgerPut.run(op.path, op.size, op.mtimeMs, op.outcome, now);
        return null;
      case 'ledgerForget':
        this.ledgerDelete.run(op.path);
        return null;
      case 'outboxAdd': {
        const { lastInsertRowid } = this.outboxInsert.run(op.payload, now);
        return { seq: Number(lastInsertRowid), bytes: Buffer.byteLength(op.payload) };
      }
      case 'outboxRemove':
        return { bytes: (this.outboxDelete.get(op.seq) as number | undefined) ?? 0 };
    }
  }

  /** Same rule as swf-monitor: tf_filename is unique, and a repeat returns the row already there. */
  private register(row: SampleRow, now: string): RegisterResult {
    const stfFileId = this.stfFor(row.stf_file, row.run_number, now);
    const tfFileId = randomUUID();
    // Every parameter named: a field JSON left out on the way here (undefined) binds as NULL, as before.
    const { changes } = this.insertSample.run({
      tf_file_id: tfFileId,
      tf_filename: row.tf_filename,
      file_size_bytes: row.file_size_bytes,
      checksum: row.checksum,
      status: row.status,
      metadata: row.metadata,
      now,
      tf_count: row.tf_count,
      tf_first: row.tf_first,
      tf_last: row.tf_last,
      stf_file_id: stfFileId,
    });
    if (changes === 1) return { tfFileId, created: true };
    const existing = this.existingSample.get(row.tf_filename) as {
      tf_file_id: string;
      stf_file: string;
      tf_first: number | null;
      tf_last: number | null;
    };
    return {
      tfFileId: existing.tf_file_id,
      created: false,
      existing: { stf_file: existing.stf_file, tf_first: existing.tf_first, tf_last: existing.tf_last },
    };
  }

  private ensureStf(stf: StfRow, now: string): void {
    const runId = this.runFor(stf.run_number, now);
    this.insertStf.run({
      file_id: randomUUID(),
      machine_state: stf.machine_state,
      stf_filename: stf.stf_filename,
      file_size_bytes: stf.file_size_bytes,
      checksum: stf.checksum,
      created_at: now,
      metadata: stf.metadata,
      daq_substate: stf.daq_substate,
      tf_count: stf.tf_count,
      run_id: runId,
    });
  }

  /** The StfFile of a sample; one without a row (announced by message, not found on disk) gets one. */
  private stfFor(name: string, runNumber: number | null, now: string): string {
    if (this.lastStf?.name === name) return this.lastStf.id;
    let id = this.stfId.get(name) as string | undefined;
    if (id === undefined) {
      let runId: number | null = null;
      if (runNumber !== null) runId = this.runFor(runNumber, now);
      id = randomUUID();
      this.insertStf.run({
        file_id: id,
        machine_state: 'physics',
        stf_filename: name,
        file_size_bytes: null,
        checksum: null,
        created_at: now,
        metadata: JSON.stringify({ source: 'sample' }),
        daq_substate: null,
        tf_count: null,
        run_id: runId,
      });
    }
    this.lastStf = { name, id };
    return id;
  }

  /** The Run row of a run number, inserted when missing. */
  private runFor(runNumber: number, now: string): number {
    if (this.lastRun?.number === runNumber) return this.lastRun.id;
    this.insertRun.run(runNumber, now);
    const id = this.runId.get(runNumber) as number;
    this.lastRun = { number: runNumber, id };
    return id;
  }

  /** A rolled-back batch may have rolled back the STF or the run remembered. */
  forget(): void {
    this.lastStf = null;
    this.lastRun = null;
  }
}
