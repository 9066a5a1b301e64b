// The agent's local state in one SQLite file: a writer thread commits batches, the main thread reads.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FastmonError } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import type { LegacyFiles } from './legacy.js';
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
 */
export class Store {
  private queue: Queued[] = [];
  private inFlight: { id: number; batch: Queued[] } | null = null;
  private nextId = 1;
  private commitCount = 0;
  private failed: FastmonError | null = null;
  private closing: Promise<void> | null = null;
  /** Pending outbox entries and their payload bytes, kept by the outbox as it adds and removes. */
  outboxDepth: number;
  outboxBytes: number;

  private constructor(
    readonly file: string,
    private readonly worker: Worker,
    readonly reader: Database.Database,
    ready: Extract<FromWriter, { type: 'ready' }>,
  ) {
    this.outboxDepth = ready.outbox.depth;
    this.outboxBytes = ready.outbox.bytes;
    worker.on('message', (message: FromWriter) => {
      if (message.type === 'done') this.settle(message.id, message.outcomes);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', () => this.fail(new Error('the store thread exited')));
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
    const data: WriterData = { file, legacy: options.legacy ?? {} };
    // A worker inherits the process's node options; --input-type (node -e scripts) would refuse a file.
    // Passed only then: given explicitly, process-wide options (--expose-gc) would be refused.
    const inputType = process.execArgv.some((arg) => arg.startsWith('--input-type'));
    const execArgv = inputType
      ? process.execArgv.filter((arg) => !arg.startsWith('--input-type'))
      : undefined;
    const worker = new Worker(writerFile(), { workerData: data, execArgv, resourceLimits: WRITER_LIMITS });
    const ready = await new Promise<Extract<FromWriter, { type: 'ready' }>>((resolve, reject) => {
      worker.once('message', (message: FromWriter) => {
        if (message.type === 'ready') resolve(message);
        else if (message.type === 'failed') reject(FastmonError.fromInfo(message.error));
      });
      worker.once('error', (err) =>
        reject(new FastmonError('STORE_OPEN_FAILED', `cannot open the local store ${file}: ${err.message}`)),
      );
    });
    for (const report of ready.imports) {
      logger.warn(
        { store: file, kind: report.kind, from: report.path, rows: report.rows, skipped: report.skipped },
        `imported the old ${report.kind} file into the local store (the file is left in place)`,
      );
    }
    let reader: Database.Database;
    try {
      reader = new Database(file, { readonly: true, fileMustExist: true });
    } catch (err) {
      await worker.terminate();
      throw new FastmonError('STORE_OPEN_FAILED', `cannot read the local store ${file}: ${String(err)}`);
    }
    logger.debug({ store: file, schemaFound: ready.version }, 'local store open');
    return new Store(file, worker, reader, ready);
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
    if (this.failed) {
      await this.worker.terminate();
      return;
    }
    const closed = new Promise<void>((resolve) => {
      this.worker.on('message', (message: FromWriter) => message.type === 'closed' && resolve());
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ type: 'close' } satisfies ToWriter);
    await closed;
  }

  private send(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.length > MAX_BATCH ? this.queue.splice(0, MAX_BATCH) : this.queue;
    if (batch === this.queue) this.queue = [];
    const id = this.nextId++;
    this.inFlight = { id, batch };
    this.worker.postMessage({ type: 'batch', id, ops: batch.map((q) => q.op) } satisfies ToWriter);
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
    this.failed ??= new FastmonError(
      'STORE_OPEN_FAILED',
      `the local store ${this.file} stopped: ${err.message}`,
    );
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
