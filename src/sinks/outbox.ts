// The registration outbox: work swf-monitor could not take yet, kept in the local store until it is replayed.

import { FastmonError } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import type { OutboxAddResult, OutboxRemoveResult } from '../store/ops.js';
import { Store } from '../store/store.js';

export interface OutboxOptions {
  /** Appends are refused (OUTBOX_FULL) while the entries' payloads hold more than this many bytes. */
  maxBytes: number;
  logger?: Logger;
}

export interface OutboxEntry {
  seq: number;
  /** What was appended, as JSON.parse(JSON.stringify(payload)): the same before and after a restart. */
  payload: unknown;
}

/** Entries read per query while iterating pending(). */
const PAGE = 256;

/**
 * The `outbox` table of the store: append() and complete() resolve once their transaction is
 * committed (many callers share one commit); pending() reads committed entries in order, a page at
 * a time, so an outbox far larger than memory costs nothing to hold. Sequence numbers only grow.
 */
export class Outbox {
  private alarmed = false;
  private queuedBytes = 0;
  private closed = false;
  private readonly page;
  private readonly completing = new Map<number, Promise<void>>();

  private constructor(
    private readonly store: Store,
    private readonly maxBytes: number,
    private readonly logger: Logger,
    /** Whether close() releases the store. */
    private readonly owned: boolean,
  ) {
    this.page = store.reader.prepare('SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?');
  }

  /**
   * The outbox of a store, or (a path) of the store in that file, opened here and closed by close().
   * `owned` makes close() release a store given as such.
   */
  static async open(where: Store | string, options: OutboxOptions & { owned?: boolean }): Promise<Outbox> {
    const { maxBytes, logger = silentLogger() } = options;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new FastmonError(
        'CONFIG_INVALID',
        `outbox option maxBytes must be a positive integer, got ${maxBytes}`,
      );
    }
    const store = typeof where === 'string' ? await Store.acquire({ file: where, logger }) : where;
    const outbox = new Outbox(store, maxBytes, logger, typeof where === 'string' || (options.owned ?? false));
    outbox.checkLimit();
    return outbox;
  }

  /** Where the entries are: the store's file. */
  get file(): string {
    return this.store.file;
  }

  /** Entries appended and not completed. */
  get depth(): number {
    return this.store.outboxDepth;
  }

  /** Bytes of the pending entries' payloads (JSON). */
  get bytes(): number {
    return this.store.outboxBytes;
  }

  /** True while appends are refused: the entries, with what is queued for them, are over maxBytes. */
  get full(): boolean {
    return this.store.outboxBytes + this.queuedBytes > this.maxBytes;
  }

  /** Commits of the store so far (shared with the catalog and the ledger). */
  get syncs(): number {
    return this.store.commits;
  }

  /** Resolves with the entry's sequence number once it is durable. */
  async append(payload: unknown): Promise<number> {
    if (this.closed) throw closedError(this.file);
    const json = JSON.stringify(payload);
    if (json === undefined)
      throw new TypeError(`outbox payload must be JSON-serialisable, got ${typeof payload}`);
    if (this.checkLimit()) throw this.fullError();
    const bytes = Buffer.byteLength(json);
    this.queuedBytes += bytes;
    let added: OutboxAddResult;
    try {
      added = await this.store.write<OutboxAddResult>({ op: 'outboxAdd', payload: json });
    } finally {
      this.queuedBytes -= bytes;
    }
    this.store.outboxDepth++;
    this.store.outboxBytes += added.bytes;
    this.checkLimit();
    return added.seq;
  }

  /** Pending entries, oldest first; entries appended or completed during the iteration may or may not show. */
  *pending(): IterableIterator<OutboxEntry> {
    let after = 0;
    for (;;) {
      const rows = this.page.all(after, PAGE) as { seq: number; payload: string }[];
      for (const row of rows) {
        after = row.seq;
        if (this.completing.has(row.seq)) continue;
        yield { seq: row.seq, payload: JSON.parse(row.payload) };
      }
      if (rows.length < PAGE) return;
    }
  }

  /** Resolves once the entry's removal is durable; completing an unknown or completed entry does nothing. */
  complete(seq: number): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.file));
    let done = this.completing.get(seq);
    if (!done) {
      done = this.remove(seq).finally(() => this.completing.delete(seq));
      this.completing.set(seq, done);
    }
    return done;
  }

  /** Waits for the writes in progress; what is pending stays in the store for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.completing.values()]);
    if (this.owned) await this.store.release();
  }

  private async remove(seq: number): Promise<void> {
    const { bytes } = await this.store.write<OutboxRemoveResult>({ op: 'outboxRemove', seq });
    if (bytes === 0) return;
    this.store.outboxDepth--;
    this.store.outboxBytes -= bytes;
    this.checkLimit();
  }

  /** Whether the outbox is full; raises the alarm once per crossing of the limit, and clears it. */
  private checkLimit(): boolean {
    const full = this.full;
    if (full !== this.alarmed) {
      this.alarmed = full;
      const context = { code: 'OUTBOX_FULL', outbox: this.file, bytes: this.bytes, maxBytes: this.maxBytes };
      if (full) {
        this.logger.error(
          { ...context, depth: this.depth },
          'outbox over its size limit: new registrations stay unacknowledged until swf-monitor takes the backlog',
        );
      } else {
        this.logger.warn({ ...context, depth: this.depth }, 'outbox back under its size limit');
      }
    }
    return full;
  }

  private fullError(): FastmonError {
    const bytes = this.bytes + this.queuedBytes;
    return new FastmonError(
      'OUTBOX_FULL',
      `outbox in ${this.file} holds ${bytes} bytes, over its limit of ${this.maxBytes} bytes`,
      { outbox: this.file, bytes, maxBytes: this.maxBytes, depth: this.depth },
    );
  }
}

function closedError(file: string): FastmonError {
  return new FastmonError('SHUTDOWN', `outbox in ${file} is closed`, { outbox: file });
}
