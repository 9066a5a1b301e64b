// `swf-fastmon catalog`: what the local store holds, for the operator: rows per run, last samples, outbox, ledger.

import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { FastmonError, messageOf } from '../errors.js';
import { databaseFile } from '../store/paths.js';
import { commandConfig } from './common.js';
import {
  CONFIG_OPTIONS,
  type CommandSpec,
  commandHelp,
  keysNamed,
  parseCommandLine,
  usageError,
} from './options.js';

/**
 * A one-shot read of the store: synchronous queries that end by themselves, so a signal needs no
 * handler of its own (the default ends the process; nothing is written).
 */
export const CATALOG: CommandSpec = {
  name: 'catalog',
  usage: 'swf-fastmon catalog [options]',
  about: `What the local store (agent.catalog, --catalog FILE) holds: rows per run, the newest samples, the
outbox entries waiting for swf-monitor, the ledger of files scanned. Read-only; safe while an agent
runs. For more, open the file with sqlite3 (docs/local-store.md has queries).`,
  options: [
    ...CONFIG_OPTIONS,
    {
      name: 'last',
      type: 'string',
      value: 'N',
      doc: 'how many of the newest samples and outbox entries to list (default 10)',
    },
  ],
  keys: keysNamed('agent.catalog'),
};

export async function catalogCommand(argv: readonly string[]): Promise<number> {
  const line = parseCommandLine(CATALOG, argv);
  if (line.values.help) {
    process.stdout.write(commandHelp(CATALOG));
    return 0;
  }
  const config = commandConfig(line);
  if (!config) return 0;
  const lastText = line.values.last;
  const last = typeof lastText === 'string' ? Number(lastText) : 10;
  if (!Number.isSafeInteger(last) || last < 0)
    throw usageError(CATALOG, `--last: expected a number >= 0, got "${lastText}"`);
  const file = databaseFile(config.agent.catalog);
  if (!existsSync(file))
    throw new FastmonError('CONFIG_INVALID', `no local store at ${file} (agent.catalog, --catalog)`);
  let db: Database.Database;
  try {
    // Read-write only so SQLite may create the WAL index when no agent has the file open; nothing is written.
    db = new Database(file, { fileMustExist: true });
    db.pragma('query_only = ON');
  } catch (err) {
    throw new FastmonError('STORE_OPEN_FAILED', `cannot open the local store ${file}: ${messageOf(err)}`);
  }
  try {
    process.stdout.write(report(db, file, last));
  } catch (err) {
    throw new FastmonError('STORE_OPEN_FAILED', `cannot read the local store ${file}: ${messageOf(err)}`);
  } finally {
    db.close();
  }
  return 0;
}

type Row = Record<string, unknown>;

function report(db: Database.Database, file: string, last: number): string {
  const out: string[] = [
    `local store ${file} (schema version ${db.pragma('user_version', { simple: true })})`,
  ];
  const runs = db
    .prepare(
      `SELECT coalesce(r.run_number, '-') AS run, count(DISTINCT s.file_id) AS stfs, count(f.tf_file_id) AS samples,
         coalesce(sum(f.file_size_bytes), 0) AS bytes, min(f.created_at) AS first, max(f.created_at) AS last
       FROM stf_files s LEFT JOIN runs r USING (run_id) LEFT JOIN fastmon_files f ON f.stf_file_id = s.file_id
       GROUP BY r.run_number ORDER BY r.run_number`,
    )
    .all() as Row[];
  out.push(
    '',
    'runs:',
    ...table(['run', 'STFs', 'samples', 'bytes', 'first sample', 'last sample'], runs, [
      'run',
      'stfs',
      'samples',
      'bytes',
      'first',
      'last',
    ]),
  );
  const samples = db
    .prepare(
      `SELECT f.created_at, r.run_number AS run, f.tf_filename, f.tf_first || '-' || f.tf_last AS tfs, f.tf_file_id
       FROM fastmon_files f JOIN stf_files s ON s.file_id = f.stf_file_id LEFT JOIN runs r USING (run_id)
       ORDER BY f.rowid DESC LIMIT ?`,
    )
    .all(last) as Row[];
  out.push(
    '',
    `last ${samples.length} samples:`,
    ...table(['created', 'run', 'tf_filename', 'TFs', 'tf_file_id'], samples, [
      'created_at',
      'run',
      'tf_filename',
      'tfs',
      'tf_file_id',
    ]),
  );
  const outbox = db
    .prepare('SELECT count(*) AS n, coalesce(sum(length(CAST(payload AS BLOB))), 0) AS bytes FROM outbox')
    .get() as { n: number; bytes: number };
  const entries = db
    .prepare(
      `SELECT seq, added_at, coalesce(json_extract(payload, '$.record.tfFilename'), substr(payload, 1, 60)) AS what
       FROM outbox ORDER BY seq LIMIT ?`,
    )
    .all(last) as Row[];
  out.push('', `outbox: ${outbox.n} entries waiting for swf-monitor (${outbox.bytes} bytes)`);
  if (entries.length > 0)
    out.push(...table(['seq', 'added', 'sample'], entries, ['seq', 'added_at', 'what']));
  const ledger = db
    .prepare('SELECT outcome, count(*) AS n FROM ledger GROUP BY outcome ORDER BY outcome')
    .all() as Row[];
  out.push(
    '',
    `ledger: ${ledger.map((r) => `${r.n} ${r.outcome}`).join(', ') || 'no files handled by scan or watch'}`,
  );
  const imports = db
    .prepare('SELECT kind, path, rows, imported_at FROM imports ORDER BY imported_at')
    .all() as Row[];
  for (const i of imports) out.push(`imported ${i.kind} ${i.path}: ${i.rows} rows at ${i.imported_at}`);
  return `${out.join('\n')}\n`;
}

function table(headers: string[], rows: Row[], keys: string[]): string[] {
  if (rows.length === 0) return ['  (none)'];
  const cells = rows.map((r) => keys.map((k) => (r[k] === null || r[k] === undefined ? '-' : String(r[k]))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `  ${c.map((v, i) => v.padEnd(widths[i]!)).join('  ')}`.trimEnd();
  return [line(headers), ...cells.map(line)];
}
