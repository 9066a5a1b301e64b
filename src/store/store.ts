// The agent's local state in one SQLite file: a writer thread, started at the first write, commits batches; the main thread reads.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FastmonError, isFastmonError } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import { closeWriting, openForWriting, reason } from './connection.js';
import { type ImportReport, importLegacy, type LegacyFiles } from './legacy.js';
import type { OpResult, StoreOp } from './ops.js';
import type { FromWriter, OpOutcome, ToWriter, WriterData } from './writer-thread.js';

export interface StoreOptions {
  /** The SQLite file (created with its directory when missing). */
  file: string;
  /** Files of older versions to import once, when present. */
  legacy?: LegacyFiles;
  logger?: Logger;
}

interface Queued {
  op: StoreOp;
  resolve: (value: OpResult) => void;
  reject: (err: Error) => void;
}

/**
 * The thread's live heap is a batch and its prepared statements; without a limit V8 lets dead batches
 * pile up longer. Writes of 120,000 STFs (StfFile, sample, ledger; 128 at a time): the process levelled
 * off at 150 MB without, 128 MB with these limits. MAX_BATCH ops of a few hundred bytes stay far below.
 */
const WRITER_LIMITS = { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 };

/** Ops per transaction at most: a batch's reply should not wait on an unbounded backlog. */
const MAX_BATCH = 4096;

const open = new Map<string, { store: Promise<Store>; users: number }>();

/**
 * Writes are queued and go to the writer thread in batches, one transaction each; a write resolves
 * once its transaction committed, and commits are fsync'd (docs/local-store.md). While one batch
 * commits the next gathers: the group commit of the old journals, with SQLite doing the file work.
 * The main thread never waits on the disk for a write; its reads (ledger lookups, the outbox's
 * pending entries) go through its own read-only connection, which sees committed rows only.
 *
 * The file is opened, migrated and its old files imported on the main thread, at start; the writer
 * thread (an isolate: 4-10 MB of RSS) starts at the first write. An agent that posts to swf-monitor
 * writes only when swf-monitor fails (the outbox), so it usually never starts it.
 */
export class Store {
  private queue: Queued[] = [];
  private inFlight: { id: number; batch: Queued[] } | null = null;
  private nextId = 1;
  private commitCount = 0;
  private failed: FastmonError | null = null;
  private closing: Promise<void> | null = null;
  /** The writer thread, from the first write on; `writerUp` once it has the file open. */
  private worker: Worker | null = null;
  private writerUp = false;
  /** Pending outbox entries and their payload bytes, kept by the outbox as it adds and removes. */
  outboxDepth: number;
  outboxBytes: number;

  private constructor(
    readonly file: string,
    /** The main thread's write connection, kept until the writer thread takes over (then null). */
    private opened: Database.Database | null,
    readonly reader: Database.Database,
    outbox: { depth: number; bytes: number },
  ) {
    this.outboxDepth = outbox.depth;
    this.outboxBytes = outbox.bytes;
  }

  /**
   * The store of `file`, shared by everything in this process that uses it (the catalog, the
   * ledger, the outbox); release() it when done. Legacy files are imported on the first open.
   */
  static acquire(options: StoreOptions): Promise<Store> {
    const file = path.resolve(options.file);
    const entry = open.get(file);
    if (entry) {
      entry.users++;
      return entry.store;
    }
    const store = Store.start(file, options);
    open.set(file, { store, users: 1 });
    store.catch(() => open.delete(file));
    return store;
  }

  private static async start(file: string, options: StoreOptions): Promise<Store> {
    const logger = options.logger ?? silentLogger();
    // Checked now, so a missing build fails the start rather than the first write.
    writerFile();
    const { db, version } = openForWriting(file);
    let imports: ImportReport[];
    let outbox: { depth: number; bytes: number };
    try {
      imports = await importLegacy(db, options.legacy ?? {});
      outbox = db
        .prepare(
          'SELECT count(*) AS depth, coalesce(sum(length(CAST(payload AS BLOB))), 0) AS bytes FROM outbox',
        )
        .get() as { depth: number; bytes: number };
    } catch (err) {
      db.close();
      if (isFastmonError(err)) throw err;
      throw new FastmonError('STORE_OPEN_FAILED', `cannot import into ${file}: ${reason(err)}`);
    }
    for (const report of imports) {
      logger.warn(
        { store: file, kind: report.kind, from: report.path, rows: report.rows, skipped: report.skipped },
        `imported the old ${report.kind} file into the local store (the file is left in place)`,
      );
    }
    let reader: Database.Database;
    try {
      reader = new Database(file, { readonly: true, fileMustExist: true });
    } catch (err) {
      db.close();
      throw new FastmonError('STORE_OPEN_FAILED', `cannot read the local store ${file}: ${String(err)}`);
    }
    logger.debug({ store: file, schemaFound: version }, 'local store open');
    return new Store(file, db, reader, outbox);
  }

  /** Committed transactions (group commits) so far. */
  get commits(): number {
    return this.commitCount;
  }

  /** Resolves once the write is committed and durable; rejects with a coded error. */
  write<T extends OpResult>(op: StoreOp): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closing)
      return Promise.reject(new FastmonError('SHUTDOWN', `local store ${this.file} is closed`));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ op, resolve: resolve as (value: OpResult) => void, reject });
      this.send();
    });
  }

  /** Resolves once every write queued so far has its answer. */
  async idle(): Promise<void> {
    while (this.inFlight || this.queue.length > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.failed) return;
    }
  }

  /** One user is done; the last one closes the store. */
  async release(): Promise<void> {
    const entry = open.get(this.file);
    if (entry && --entry.users > 0) return;
    open.delete(this.file);
    this.closing ??= this.shutDown();
    await this.closing;
  }

  private async shutDown(): Promise<void> {
    await this.idle();
    this.reader.close();
    if (this.opened) {
      // Never written: the main thread's connection is the last one, and folds the WAL back.
      closeWriting(this.opened);
      this.opened = null;
      return;
    }
    const worker = this.worker;
    if (!worker) return;
    if (this.failed) {
      await worker.terminate();
      return;
    }
    const closed = new Promise<void>((resolve) => {
      worker.on('message', (message: FromWriter) => message.type === 'closed' && resolve());
      worker.once('exit', () => resolve());
    });
    worker.postMessage({ type: 'close' } satisfies ToWriter);
    await closed;
  }

  private send(): void {
    if (this.inFlight || this.queue.length === 0) return;
    if (!this.writerUp) {
      if (!this.worker) this.startWriter();
      return;
    }
    const batch = this.queue.length > MAX_BATCH ? this.queue.splice(0, MAX_BATCH) : this.queue;
    if (batch === this.queue) this.queue = [];
    const id = this.nextId++;
    this.inFlight = { id, batch };
    // As JSON text: one string crosses the thread boundary instead of a structured clone of every
    // op's object (ops are plain strings, numbers and nulls). A scan of 25,000 STFs: 4 % more files/s,
    // 5 µs less of the store thread per file (BENCHMARKS.md, "Scan: where the CPU goes").
    const ops = JSON.stringify(batch.map((q) => q.op));
    this.worker!.postMessage({ type: 'batch', id, ops } satisfies ToWriter);
  }

  /** Hands the file over to a writer thread; the queued writes go once it has opened it. */
  private startWriter(): void {
    // Two write connections in one process would work (SQLite locks), but one is enough.
    this.opened?.close();
    this.opened = null;
    const data: WriterData = { file: this.file };
    // A worker inherits the process's node options; --input-type (node -e scripts) would refuse a file.
    // Passed only then: given explicitly, process-wide options (--expose-gc) would be refused.
    const inputType = process.execArgv.some((arg) => arg.startsWith('--input-type'));
    const execArgv = inputType
      ? process.execArgv.filter((arg) => !arg.startsWith('--input-type'))
      : undefined;
    const worker = new Worker(writerFile(), { workerData: data, execArgv, resourceLimits: WRITER_LIMITS });
    this.worker = worker;
    worker.on('message', (message: FromWriter) => {
      if (message.type === 'done') this.settle(message.id, JSON.parse(message.outcomes) as OpOutcome[]);
      else if (message.type === 'ready') {
        this.writerUp = true;
        this.send();
      } else if (message.type === 'failed') this.fail(FastmonError.fromInfo(message.error));
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', () => this.fail(new Error('the store thread exited')));
  }

  private settle(id: number, outcomes: OpOutcome[]): void {
    const flight = this.inFlight;
    if (!flight || flight.id !== id) return;
    this.inFlight = null;
    if (outcomes.some((o) => o.ok)) this.commitCount++;
    for (let i = 0; i < flight.batch.length; i++) {
      const outcome = outcomes[i]!;
      if (outcome.ok) flight.batch[i]!.resolve(outcome.value);
      else flight.batch[i]!.reject(FastmonError.fromInfo(outcome.error));
    }
    this.send();
  }

  private fail(err: Error): void {
    if (this.closing && !this.inFlight && this.queue.length === 0) return;
    this.failed ??= isFastmonError(err)
      ? err
      : new FastmonError('STORE_OPEN_FAILED', `the local store ${this.file} stopped: ${err.message}`);
    const waiting = [...(this.inFlight?.batch ?? []), ...this.queue];
    this.inFlight = null;
    this.queue = [];
    for (const q of waiting) q.reject(this.failed);
  }
}

/** The compiled thread module; from source (vitest) the one `npm run build` put in dist/. */
function writerFile(): string {
  const here = fileURLToPath(import.meta.url);
  const compiled = here.endsWith('.ts')
    ? path.resolve(path.dirname(here), '../../dist/src/store/writer-thread.js')
    : path.resolve(path.dirname(here), 'writer-thread.js');
  if (!existsSync(compiled))
    throw new Error(`store thread module ${compiled} is missing: run "npm run build" first`);
  return compiled;
}
