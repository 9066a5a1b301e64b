// TF samples (and disk-found STFs) written straight into swf-monitor's PostgreSQL, in group commits.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { FastmonError, isFastmonError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import {
  checkSchema,
  describeMonitorDb,
  isPermanentConnectError,
  isRowError,
  type MonitorDbOptions,
  openMonitorDb,
  unavailable,
} from '../monitor/db.js';
import { GroupCommit, type ItemResult, Lanes } from './group-commit.js';
import {
  describeConflict,
  type Registered,
  type Registrar,
  type SampleRecord,
  type StfRecord,
} from './registrar.js';

export interface DbRegistrarOptions extends MonitorDbOptions {
  /** Rows per statement at most. */
  batchRows: number;
  /** How long the first row of a batch waits for company (ms). */
  flushMs: number;
  logger: Logger;
  /** Called per written batch (table, rows, seconds, ok) for metrics. */
  observe?: (table: string, rows: number, seconds: number, ok: boolean) => void;
}

const INT32_MAX = 2147483647;

/** Connections beside the writers' for the StfFile tf_count lookups (opened on the first lookup). */
const READ_CONNECTIONS = 1;

/**
 * One statement per batch, in autocommit (so one transaction): the rows go in through unnest()
 * arrays, each joined to its StfFile by name in the same statement (no parent, no row), with
 * ON CONFLICT (tf_filename) DO NOTHING; the outer SELECT says for every input row whether it was
 * created, already there (with the existing row's range, for the conflict check), or refused
 * because its STF is unknown. The existing-row join reads the statement's snapshot, so it sees rows
 * committed before the batch began, never this statement's own inserts.
 */
const INSERT_SAMPLES = `
WITH input AS MATERIALIZED (
  SELECT t.*, s.file_id AS stf_id
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::jsonb[],
                $7::int[], $8::int[], $9::int[])
         WITH ORDINALITY AS t(id, tf_filename, stf_filename, size, checksum, metadata, tf_first, tf_last, tf_count, ord)
    -- One index probe per row (LIMIT 1 keeps it a nested loop): never a scan of the whole STF table.
    LEFT JOIN LATERAL (
      SELECT file_id FROM swf_stf_files WHERE stf_filename = t.stf_filename LIMIT 1
    ) s ON true
),
inserted AS (
  INSERT INTO swf_fastmon_files (tf_file_id, tf_filename, file_size_bytes, checksum, status, metadata,
                                 created_at, updated_at, tf_count, tf_first, tf_last, stf_file_id)
  SELECT id, tf_filename, size, checksum, 'registered', metadata,
         now(), now(), tf_count, tf_first, tf_last, stf_id
    FROM input WHERE stf_id IS NOT NULL
   ORDER BY ord
  ON CONFLICT (tf_filename) DO NOTHING
  RETURNING tf_file_id, tf_filename
)
SELECT i.ord::int AS ord, n.tf_file_id AS created_id,
       e.tf_file_id AS existing_id, e.stf_filename AS existing_stf, e.tf_first, e.tf_last,
       i.stf_id IS NOT NULL AS stf_known
  FROM input i
  LEFT JOIN inserted n ON n.tf_filename = i.tf_filename
  -- Only rows not inserted look for an existing one (a one-time filter skips the probe for the others).
  LEFT JOIN LATERAL (
    SELECT f.tf_file_id, es.stf_filename, f.tf_first, f.tf_last
      FROM swf_fastmon_files f JOIN swf_stf_files es ON es.file_id = f.stf_file_id
     WHERE n.tf_file_id IS NULL AND f.tf_filename = i.tf_filename
     LIMIT 1
  ) e ON true
 ORDER BY i.ord`;

/** Rows a concurrent writer committed after this batch's snapshot: read back once committed. */
const FIND_SAMPLES = `
SELECT f.tf_filename, f.tf_file_id, s.stf_filename, f.tf_first, f.tf_last
  FROM swf_fastmon_files f JOIN swf_stf_files s ON s.file_id = f.stf_file_id
 WHERE f.tf_filename = ANY($1::text[])`;

/** StfFile rows as the API's serializer writes them (nullable fields it does not get stay NULL). */
const INSERT_STFS = `
INSERT INTO swf_stf_files (file_id, machine_state, stf_filename, file_size_bytes, checksum, created_at,
                           status, metadata, workflow_id, daq_state, daq_substate, workflow_status,
                           tf_count, run_id)
SELECT i.id, i.machine_state, i.stf_filename, i.size, i.checksum, now(),
       'registered', i.metadata, NULL, NULL, NULL, NULL, i.tf_count, r.run_id
  FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::jsonb[], $8::int[])
       WITH ORDINALITY AS i(id, stf_filename, run_number, size, checksum, machine_state, metadata, tf_count, ord)
  JOIN swf_runs r ON r.run_number = i.run_number
 ORDER BY i.ord
ON CONFLICT (stf_filename) DO NOTHING`;

/** The StfFile rows' tf_count for a batch of names (one index probe each). */
const STF_TF_COUNTS = `
SELECT t.ord::int AS ord, s.tf_count
  FROM unnest($1::text[]) WITH ORDINALITY AS t(stf_filename, ord)
  LEFT JOIN LATERAL (SELECT tf_count FROM swf_stf_files WHERE stf_filename = t.stf_filename LIMIT 1) s ON true
 ORDER BY t.ord`;

const INSERT_RUN = `
INSERT INTO swf_runs (run_number, start_time, run_conditions) VALUES ($1, $2, NULL)
ON CONFLICT (run_number) DO NOTHING`;

interface SampleRow {
  ord: number;
  created_id: string | null;
  existing_id: string | null;
  existing_stf: string | null;
  tf_first: number | null;
  tf_last: number | null;
  stf_known: boolean;
}

/** A 400 as swf-monitor answers it, so the agent treats both paths' refusals alike. */
function rejected(field: string, message: string): FastmonError {
  return new FastmonError('MONITOR_REJECTED', `swf-monitor database refused ${field}: ${message}`, {
    method: 'SQL',
    status: 400,
    response: { [field]: [message] },
  });
}

/** DRF's field checks that the columns would otherwise enforce for the whole batch at once. */
function checkText(field: string, value: string | null, max: number, blank = true): FastmonError | null {
  if (value === null) return null;
  if (!blank && value === '') return rejected(field, 'This field may not be blank.');
  if (value.length > max) return rejected(field, `Ensure this field has no more than ${max} characters.`);
  return null;
}

function checkInt(field: string, value: number | null, min = -INT32_MAX - 1, max = INT32_MAX) {
  if (value === null) return null;
  if (!Number.isInteger(value)) return rejected(field, 'A valid integer is required.');
  if (value > max) return rejected(field, `Ensure this value is less than or equal to ${max}.`);
  if (value < min) return rejected(field, `Ensure this value is greater than or equal to ${min}.`);
  return null;
}

interface PreparedSample {
  id: string;
  sample: SampleRecord;
  tfFilename: string;
  stfFilename: string;
  checksum: string | null;
  metadata: string;
}

function prepareSample(s: SampleRecord): PreparedSample | FastmonError {
  // DRF CharFields strip surrounding whitespace before saving: the same name must land here.
  const tfFilename = s.tfFilename.trim();
  const stfFilename = s.stfFilename.trim();
  const checksum = s.checksum === null ? null : s.checksum.trim();
  const problem =
    checkText('tf_filename', tfFilename, 255, false) ??
    checkText('stf_file', stfFilename, 255, false) ??
    checkText('checksum', checksum, 64) ??
    checkInt('file_size_bytes', s.fileSizeBytes, 0, Number.MAX_SAFE_INTEGER) ??
    checkInt('tf_first', s.tfFirst) ??
    checkInt('tf_last', s.tfLast) ??
    checkInt('tf_count', s.tfCount);
  if (problem) return problem;
  return {
    id: randomUUID(),
    sample: s,
    tfFilename,
    stfFilename,
    checksum,
    metadata: JSON.stringify(s.metadata),
  };
}

interface PreparedStf {
  id: string;
  stf: StfRecord;
  stfFilename: string;
  machineState: string;
  checksum: string | null;
  metadata: string;
}

function prepareStf(stf: StfRecord): PreparedStf | FastmonError {
  const stfFilename = stf.stfFilename.trim();
  const machineState = (stf.state ?? 'physics').trim();
  const checksum = stf.checksum === null ? null : stf.checksum.trim();
  const problem =
    checkText('stf_filename', stfFilename, 255, false) ??
    checkText('machine_state', machineState, 64, false) ??
    checkText('checksum', checksum, 64) ??
    checkInt('file_size_bytes', stf.sizeBytes, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) ??
    checkInt('tf_count', stf.tfCount) ??
    checkInt('run', stf.runNumber);
  if (problem) return problem;
  return {
    id: randomUUID(),
    stf,
    stfFilename,
    machineState,
    checksum,
    metadata: JSON.stringify({ ...stf.metadata, substate: stf.substate }),
  };
}

/**
 * The PostgreSQL registrar: same rows, same idempotency and same refusals as the REST path, but
 * the samples of every STF in flight share one INSERT per batch instead of one POST (and ~6
 * commits) per row. Heartbeats, the agent name, the subscriber row and logs stay on REST.
 */
export class DbRegistrar implements Registrar {
  readonly kind = 'database';
  private readonly samples: GroupCommit<PreparedSample, Registered>;
  private readonly stfs: GroupCommit<PreparedStf, void>;
  private readonly tfCounts: GroupCommit<string, number | null>;
  private readonly runs = new Map<number, Promise<void>>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly options: DbRegistrarOptions,
  ) {
    // The writes share `connections` lanes, so a batch is cut only when a connection is free to
    // write it. The tf_count lookups have a connection of their own (the pool holds one more): a
    // lookup never waits behind a commit's WAL flush, and its STF's samples are not held up by it.
    const writes = new Lanes(Math.max(1, options.connections));
    this.samples = new GroupCommit({
      write: (batch) => this.writeSamples(batch),
      maxItems: options.batchRows,
      maxDelayMs: options.flushMs,
      concurrency: writes,
    });
    this.tfCounts = new GroupCommit({
      write: (batch) => this.readTfCounts(batch),
      maxItems: options.batchRows,
      maxDelayMs: options.flushMs,
      concurrency: READ_CONNECTIONS,
    });
    this.stfs = new GroupCommit({
      write: (batch) => this.writeStfs(batch),
      maxItems: options.batchRows,
      maxDelayMs: options.flushMs,
      concurrency: writes,
    });
  }

  /**
   * Connects and checks the tables (MONITOR_DB_SCHEMA when they differ). An unreachable database
   * is waited for, as the agent waits for swf-monitor at start; a wrong password or database name
   * will not heal and fails at once.
   */
  static async open(options: DbRegistrarOptions, signal?: AbortSignal): Promise<DbRegistrar> {
    const pool = openMonitorDb({ ...options, connections: options.connections + READ_CONNECTIONS });
    const where = describeMonitorDb(options.url);
    let delay = 500;
    for (;;) {
      try {
        await checkSchema(pool);
        break;
      } catch (err) {
        if (isFastmonError(err, 'MONITOR_DB_SCHEMA') || isPermanentConnectError(err)) {
          await pool.end().catch(() => {});
          throw isFastmonError(err) ? err : unavailable(err, `cannot use ${where}`);
        }
        options.logger.warn(
          { code: 'MONITOR_UNAVAILABLE', database: where },
          `${unavailable(err, 'not reachable').message}; retrying in ${delay} ms`,
        );
        const stopped = await sleep(delay, false, { signal }).catch(() => true);
        if (stopped) {
          await pool.end().catch(() => {});
          throw new FastmonError('SHUTDOWN', `stopped while waiting for ${where}`);
        }
        delay = Math.min(delay * 2, 10_000);
      }
    }
    options.logger.info(
      { database: where, batchRows: options.batchRows, flushMs: options.flushMs },
      "registering into swf-monitor's database directly (tables checked)",
    );
    return new DbRegistrar(pool, options);
  }

  get batches(): { batches: number; items: number } {
    return this.samples.stats;
  }

  async register(sample: SampleRecord): Promise<Registered> {
    const prepared = prepareSample(sample);
    if (prepared instanceof FastmonError) throw prepared;
    return this.samples.add(prepared);
  }

  /** The StfFile row's tf_count (null: no row or no count), looked up in batches like the writes. */
  async stfTfCount(stfFilename: string): Promise<number | null> {
    return this.tfCounts.add(stfFilename.trim());
  }

  async ensureStf(stf: StfRecord): Promise<void> {
    const prepared = prepareStf(stf);
    if (prepared instanceof FastmonError) throw prepared;
    await this.ensureRun(stf.runNumber);
    await this.stfs.add(prepared);
  }

  async close(): Promise<void> {
    await this.tfCounts.drain();
    await this.samples.drain();
    await this.stfs.drain();
    await this.pool.end();
  }

  /** One statement per run number and process (cached like the REST path's run lookup). */
  private ensureRun(runNumber: number): Promise<void> {
    let done = this.runs.get(runNumber);
    if (!done) {
      done = this.pool
        .query(INSERT_RUN, [runNumber, new Date()])
        .then(() => undefined)
        .catch((err) => {
          throw isRowError(err)
            ? rejected('run_number', String(err.message))
            : unavailable(err, 'Run insert');
        });
      this.runs.set(runNumber, done);
      done.catch(() => this.runs.delete(runNumber));
    }
    return done;
  }

  private async readTfCounts(batch: string[]): Promise<ItemResult<number | null>[]> {
    let rows: { ord: number; tf_count: number | null }[];
    try {
      rows = (await this.pool.query({ name: 'fastmon-stf-tf-counts', text: STF_TF_COUNTS, values: [batch] }))
        .rows;
    } catch (err) {
      throw unavailable(err, 'StfFile tf_count lookup');
    }
    // As the REST path: a positive integer, or nothing.
    return batch.map((_, i) => {
      const n = rows[i]?.tf_count;
      return { ok: true, value: typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : null };
    });
  }

  private async writeStfs(batch: PreparedStf[]): Promise<ItemResult<void>[]> {
    const started = performance.now();
    try {
      await this.pool.query({
        name: 'fastmon-insert-stfs',
        text: INSERT_STFS,
        values: [
          batch.map((b) => b.id),
          batch.map((b) => b.stfFilename),
          batch.map((b) => b.stf.runNumber),
          batch.map((b) => b.stf.sizeBytes),
          batch.map((b) => b.checksum),
          batch.map((b) => b.machineState),
          batch.map((b) => b.metadata),
          batch.map((b) => b.stf.tfCount),
        ],
      });
      this.options.observe?.('swf_stf_files', batch.length, (performance.now() - started) / 1000, true);
      return batch.map(() => ({ ok: true, value: undefined }));
    } catch (err) {
      this.options.observe?.('swf_stf_files', batch.length, (performance.now() - started) / 1000, false);
      if (!isRowError(err)) throw unavailable(err, 'StfFile batch');
      if (batch.length === 1)
        return [{ ok: false, error: rejected('stf_filename', String((err as Error).message)) }];
      const half = Math.ceil(batch.length / 2);
      return [...(await this.writeStfs(batch.slice(0, half))), ...(await this.writeStfs(batch.slice(half)))];
    }
  }

  /** Writes a batch; a row error splits it in halves (each its own statement) down to the bad row. */
  private async writeSamples(batch: PreparedSample[]): Promise<ItemResult<Registered>[]> {
    // The same name twice in one batch (a redelivery racing its original) goes in once.
    const firstByName = new Map<string, number>();
    const unique: PreparedSample[] = [];
    const slot = batch.map((b) => {
      let at = firstByName.get(b.tfFilename);
      if (at === undefined) {
        at = unique.push(b) - 1;
        firstByName.set(b.tfFilename, at);
      }
      return at;
    });
    const results = await this.writeUnique(unique);
    return batch.map((b, i) => {
      const r = results[slot[i] as number] as ItemResult<Registered>;
      if (unique[slot[i] as number] === b || !r.ok) return r;
      const conflict = r.ok ? describeConflictOf(unique[slot[i] as number] as PreparedSample, b) : null;
      if (conflict) this.warnConflict(b, conflict);
      return { ok: true, value: { tfFileId: r.value.tfFileId, created: false } };
    });
  }

  private async writeUnique(batch: PreparedSample[]): Promise<ItemResult<Registered>[]> {
    if (batch.length === 0) return [];
    const started = performance.now();
    let rows: SampleRow[];
    try {
      rows = (
        await this.pool.query<SampleRow>({
          // Named: each connection parses and plans it once, not once per batch.
          name: 'fastmon-insert-samples',
          text: INSERT_SAMPLES,
          values: [
            batch.map((b) => b.id),
            batch.map((b) => b.tfFilename),
            batch.map((b) => b.stfFilename),
            batch.map((b) => b.sample.fileSizeBytes),
            batch.map((b) => b.checksum),
            batch.map((b) => b.metadata),
            batch.map((b) => b.sample.tfFirst),
            batch.map((b) => b.sample.tfLast),
            batch.map((b) => b.sample.tfCount),
          ],
        })
      ).rows;
      this.options.observe?.('swf_fastmon_files', batch.length, (performance.now() - started) / 1000, true);
    } catch (err) {
      this.options.observe?.('swf_fastmon_files', batch.length, (performance.now() - started) / 1000, false);
      if (!isRowError(err)) throw unavailable(err, 'FastMonFile batch');
      if (batch.length === 1) {
        return [{ ok: false, error: rejected('tf_filename', String((err as Error).message)) }];
      }
      const half = Math.ceil(batch.length / 2);
      return [
        ...(await this.writeUnique(batch.slice(0, half))),
        ...(await this.writeUnique(batch.slice(half))),
      ];
    }
    const results: ItemResult<Registered>[] = [];
    const raced: number[] = [];
    for (const [i, b] of batch.entries()) {
      const row = rows[i];
      if (row?.created_id) {
        results.push({ ok: true, value: { tfFileId: row.created_id, created: true } });
      } else if (row?.existing_id) {
        results.push({
          ok: true,
          value: this.existing(b, row.existing_id, row.existing_stf, row.tf_first, row.tf_last),
        });
      } else if (row && !row.stf_known) {
        // The API's SlugRelatedField answer, word for word.
        results.push({
          ok: false,
          error: rejected('stf_file', `Object with stf_filename=${b.stfFilename} does not exist.`),
        });
      } else {
        results.push({ ok: false, error: new Error('pending') });
        raced.push(i);
      }
    }
    if (raced.length > 0) await this.resolveRaced(batch, raced, results);
    return results;
  }

  /** Names another connection inserted after this statement's snapshot: read them now. */
  private async resolveRaced(batch: PreparedSample[], raced: number[], results: ItemResult<Registered>[]) {
    let found: Map<string, { tf_file_id: string; stf_filename: string; tf_first: number; tf_last: number }>;
    try {
      const { rows } = await this.pool.query(FIND_SAMPLES, [
        raced.map((i) => (batch[i] as PreparedSample).tfFilename),
      ]);
      found = new Map(rows.map((r) => [r.tf_filename, r]));
    } catch (err) {
      const error = unavailable(err, 'FastMonFile read-back');
      for (const i of raced) results[i] = { ok: false, error };
      return;
    }
    for (const i of raced) {
      const b = batch[i] as PreparedSample;
      const row = found.get(b.tfFilename);
      results[i] = row
        ? { ok: true, value: this.existing(b, row.tf_file_id, row.stf_filename, row.tf_first, row.tf_last) }
        : { ok: false, error: unavailable(new Error('row neither inserted nor found'), b.tfFilename) };
    }
  }

  private existing(
    b: PreparedSample,
    id: string,
    stf: string | null,
    first: number | null,
    last: number | null,
  ): Registered {
    const conflict = describeConflict({ stf_file: stf ?? '', tf_first: first, tf_last: last }, b.sample);
    if (conflict) this.warnConflict(b, conflict);
    return { tfFileId: id, created: false };
  }

  private warnConflict(b: PreparedSample, conflict: string): void {
    this.options.logger.warn(
      { code: 'REGISTRATION_CONFLICT', tf_filename: b.tfFilename, stf: b.stfFilename, conflict },
      'TF sample already registered with a different range; keeping the existing row',
    );
  }
}

function describeConflictOf(first: PreparedSample, later: PreparedSample): string | null {
  return describeConflict(
    { stf_file: first.stfFilename, tf_first: first.sample.tfFirst, tf_last: first.sample.tfLast },
    later.sample,
  );
}
