// One-time import of the files older versions kept: the JSON-lines catalog, the TSV ledger, the outbox journal.

import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type Database from 'better-sqlite3';
import { type ErrorCode, FastmonError } from '../errors.js';

export type LegacyKind = 'catalog' | 'ledger' | 'outbox';

export interface LegacyFiles {
  catalog?: string | undefined;
  ledger?: string | undefined;
  outbox?: string | undefined;
}

/** What one import did, for the log. */
export interface ImportReport {
  kind: LegacyKind;
  path: string;
  rows: number;
  /** Lines that could not be read (a torn last line, hand edits), skipped. */
  skipped: number;
}

/**
 * Imports each legacy file that exists and was not imported before (the `imports` table remembers
 * its absolute path), in one transaction per file together with its `imports` row: a crash halfway
 * leaves nothing, and the next start imports it again. The files are left where they are.
 */
export async function importLegacy(db: Database.Database, files: LegacyFiles): Promise<ImportReport[]> {
  const reports: ImportReport[] = [];
  const done = db.prepare('SELECT 1 FROM imports WHERE path = ?').pluck();
  for (const kind of ['catalog', 'ledger', 'outbox'] as const) {
    const file = files[kind];
    if (!file) continue;
    const resolved = path.resolve(file);
    if (!existsSync(resolved) || done.get(resolved) !== undefined) continue;
    reports.push(await importOne(db, kind, resolved));
  }
  return reports;
}

async function importOne(db: Database.Database, kind: LegacyKind, file: string): Promise<ImportReport> {
  const apply =
    kind === 'catalog' ? catalogLines(db) : kind === 'ledger' ? ledgerLines(db, file) : outboxLines(db, file);
  const report: ImportReport = { kind, path: file, rows: 0, skipped: 0 };
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  // better-sqlite3's transaction() cannot span an await; a plain BEGIN can, and nothing else writes meanwhile.
  db.exec('BEGIN IMMEDIATE');
  try {
    let number = 0;
    for await (const text of lines) {
      number++;
      if (text.trim() === '') continue;
      const outcome = apply(text, number);
      if (outcome === 'row') report.rows++;
      else if (outcome === 'bad') report.skipped++;
    }
    report.rows += apply.finish?.() ?? 0;
    db.prepare('INSERT INTO imports (path, kind, rows, imported_at) VALUES (?, ?, ?, ?)').run(
      file,
      kind,
      report.rows,
      new Date().toISOString(),
    );
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  } finally {
    lines.close();
  }
  return report;
}

type LineResult = 'row' | 'bad' | 'other';
/** finish() returns the rows it added. */
type LineHandler = ((text: string, number: number) => LineResult) & { finish?: () => number };

function notA(kind: LegacyKind, code: ErrorCode, file: string, header: string): never {
  throw new FastmonError(code, `${file} is not a swf-fastmon ${kind} (its first line is not "${header}")`, {
    [kind]: file,
  });
}

// ---------------------------------------------------------------------------------------------------------
// The catalog: {"kind":"stf_file",...} and {"kind":"fastmon_file",...} lines.

function catalogLines(db: Database.Database): LineHandler {
  const now = new Date().toISOString();
  const insertRun = db.prepare(
    'INSERT INTO runs (run_number, start_time) VALUES (?, ?) ON CONFLICT (run_number) DO NOTHING',
  );
  const runId = db.prepare('SELECT run_id FROM runs WHERE run_number = ?').pluck();
  const insertStf = db.prepare(
    `INSERT INTO stf_files (file_id, machine_state, stf_filename, file_size_bytes, checksum, created_at,
       status, metadata, daq_substate, tf_count, run_id)
     VALUES (?, ?, ?, ?, ?, ?, 'registered', ?, ?, ?, ?) ON CONFLICT (stf_filename) DO NOTHING`,
  );
  const stfId = db.prepare('SELECT file_id FROM stf_files WHERE stf_filename = ?').pluck();
  const insertSample = db.prepare(
    `INSERT INTO fastmon_files (tf_file_id, tf_filename, file_size_bytes, checksum, status, metadata,
       created_at, updated_at, tf_count, tf_first, tf_last, stf_file_id)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  const run = (n: unknown): number | null => {
    const value = typeof n === 'string' && /^\d+$/.test(n) ? Number(n) : n;
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) return null;
    insertRun.run(value, now);
    return runId.get(value) as number;
  };
  return (text) => {
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(text);
    } catch {
      return 'bad';
    }
    if (row === null || typeof row !== 'object') return 'bad';
    const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));
    if (row.kind === 'stf_file' && typeof row.stf_filename === 'string') {
      const metadata = (row.metadata ?? {}) as Record<string, unknown>;
      insertStf.run(
        randomUUID(),
        typeof row.machine_state === 'string' ? row.machine_state : 'physics',
        row.stf_filename,
        num(row.file_size_bytes),
        str(row.checksum),
        str(row.created_at) ?? now,
        json(metadata),
        str(metadata.substate),
        num(row.tf_count),
        run(row.run_number),
      );
      return 'other';
    }
    if (
      row.kind !== 'fastmon_file' ||
      typeof row.tf_filename !== 'string' ||
      typeof row.stf_file !== 'string'
    )
      return 'bad';
    const metadata = (row.metadata ?? {}) as Record<string, unknown>;
    let stf = stfId.get(row.stf_file) as string | undefined;
    if (stf === undefined) {
      stf = randomUUID();
      insertStf.run(
        stf,
        'physics',
        row.stf_file,
        null,
        null,
        now,
        '{"source":"sample"}',
        null,
        null,
        run(metadata.run_id),
      );
    }
    const created = str(row.created_at) ?? now;
    const { changes } = insertSample.run(
      str(row.tf_file_id) ?? randomUUID(),
      row.tf_filename,
      num(row.file_size_bytes),
      str(row.checksum),
      str(row.status) ?? 'registered',
      json(row.metadata),
      created,
      str(row.updated_at) ?? created,
      num(row.tf_count),
      num(row.tf_first),
      num(row.tf_last),
      stf,
    );
    return changes === 1 ? 'row' : 'other';
  };
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

// ---------------------------------------------------------------------------------------------------------
// The ledger: "#swf-fastmon-ledger v1", then "<outcome>\t<size>\t<mtimeMs>\t<key>" or "forget\t<key>".

const LEDGER_HEADER = '#swf-fastmon-ledger v1';
const OUTCOMES = new Set(['sampled', 'skipped', 'failed']);

function ledgerLines(db: Database.Database, file: string): LineHandler {
  const now = new Date().toISOString();
  const put = db.prepare(
    `INSERT INTO ledger (path, size, mtime_ms, outcome, recorded_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms, outcome = excluded.outcome`,
  );
  const forget = db.prepare('DELETE FROM ledger WHERE path = ?');
  return (text, number) => {
    if (number === 1) {
      if (text !== LEDGER_HEADER) notA('ledger', 'LEDGER_INVALID', file, LEDGER_HEADER);
      return 'other';
    }
    const fields = text.split('\t');
    if (fields[0] === 'forget' && fields.length >= 2) {
      forget.run(unescapeKey(fields.slice(1).join('\t')));
      return 'other';
    }
    if (!OUTCOMES.has(fields[0]!) || fields.length < 4) return 'bad';
    const size = Number(fields[1]);
    const mtimeMs = Number(fields[2]);
    if (!/^\d+$/.test(fields[1]!) || !Number.isFinite(mtimeMs) || fields[2] === '') return 'bad';
    put.run(unescapeKey(fields.slice(3).join('\t')), size, mtimeMs, fields[0], now);
    return 'row';
  };
}

/** The ledger wrote `\` as `\\`, LF as `\n`, CR as `\r` and a lone surrogate as `\uXXXX`. */
function unescapeKey(key: string): string {
  if (!key.includes('\\')) return key;
  return key.replace(/\\(?:u([0-9a-f]{4})|([\\nr]))/g, (_, hex: string | undefined, c: string | undefined) =>
    hex === undefined
      ? ({ '\\': '\\', n: '\n', r: '\r' } as Record<string, string>)[c!]!
      : String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

// ---------------------------------------------------------------------------------------------------------
// The outbox: "#swf-fastmon-outbox v1 next=<seq>", then "put\t<seq>\t<json>" and "done\t<seq>".

const OUTBOX_HEADER = /^#swf-fastmon-outbox v1(?: next=\d+)?$/;

function outboxLines(db: Database.Database, file: string): LineHandler {
  const pending = new Map<number, string>();
  const insert = db.prepare('INSERT INTO outbox (payload, added_at) VALUES (?, ?)');
  const handler: LineHandler = (text, number) => {
    if (number === 1) {
      if (!OUTBOX_HEADER.test(text)) notA('outbox', 'CONFIG_INVALID', file, '#swf-fastmon-outbox v1 next=…');
      return 'other';
    }
    const [kind, seqText, ...rest] = text.split('\t');
    const seq = Number(seqText);
    if (!Number.isSafeInteger(seq) || seq <= 0) return 'bad';
    if (kind === 'done') {
      pending.delete(seq);
      return 'other';
    }
    if (kind !== 'put') return 'bad';
    const json = rest.join('\t');
    try {
      JSON.parse(json);
    } catch {
      return 'bad';
    }
    pending.set(seq, json);
    return 'other';
  };
  // Entries still pending at the end of the journal, in their order.
  handler.finish = () => {
    const now = new Date().toISOString();
    for (const seq of [...pending.keys()].sort((a, b) => a - b)) insert.run(pending.get(seq)!, now);
    return pending.size;
  };
  return handler;
}
