// Group commit for an append-only file: lines queued while a batch syncs go out in one write and one fdatasync.

import type { FileHandle } from 'node:fs/promises';
import type { FastmonError } from '../errors.js';

interface QueuedLine {
  text: string;
  bytes: number;
  onDurable: (() => void) | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The same scheme as the ledger and the catalog, for the outbox. A failed write or sync poisons the
 * journal: the file's tail is unknown and Linux may already have dropped the dirty pages (fsyncgate), so
 * nothing written later could be trusted.
 */
export class Journal {
  private queue: QueuedLine[] = [];
  private queued = 0;
  private flushing: Promise<void> | null = null;
  private lock: Promise<void> = Promise.resolve();
  private failed: FastmonError | null = null;
  private syncCount = 0;

  constructor(
    private handle: FileHandle,
    private size: number,
    private readonly wrap: (what: string, err: unknown) => FastmonError,
  ) {}

  /** Bytes in the file, durable ones only. */
  get bytes(): number {
    return this.size;
  }

  /** Bytes waiting for the next group commit. */
  get queuedBytes(): number {
    return this.queued;
  }

  get syncs(): number {
    return this.syncCount;
  }

  get failure(): FastmonError | null {
    return this.failed;
  }

  /**
   * Resolves once the line is durable. onDurable runs first, synchronously with the other lines of its
   * batch, so state derived from it never shows a line that is not on disk.
   */
  append(text: string, onDurable?: () => void): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    const bytes = Buffer.byteLength(text);
    return new Promise((resolve, reject) => {
      this.queue.push({ text, bytes, onDurable, resolve, reject });
      this.queued += bytes;
      this.flushing ??= this.flush();
    });
  }

  /** Runs fn while no batch is being written: the moment to swap the file under the journal. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** Inside exclusive(): continues on another file (an atomic rewrite); returns the previous handle. */
  replace(handle: FileHandle, size: number): FileHandle {
    const previous = this.handle;
    this.handle = handle;
    this.size = size;
    return previous;
  }

  /** Marks the journal unusable, e.g. when the directory entry of a rewrite could not be synced. */
  poison(what: string, err: unknown): FastmonError {
    this.failed ??= this.wrap(what, err);
    return this.failed;
  }

  /** Resolves once everything queued so far is written (or failed) and no swap is running. */
  async idle(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.lock;
  }

  /** Writes what is queued, then closes the file. */
  async close(): Promise<void> {
    await this.idle();
    await this.handle.close();
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.exclusive(() => this.commit());
    } finally {
      this.flushing = null;
    }
  }

  private async commit(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const bytes = batch.reduce((sum, line) => sum + line.bytes, 0);
    this.queued -= bytes;
    try {
      if (this.failed) throw this.failed;
      await this.handle.appendFile(batch.map((line) => line.text).join(''));
      await this.handle.datasync();
    } catch (err) {
      const failure = this.poison('cannot append to', err);
      for (const line of batch) line.reject(failure);
      return;
    }
    this.syncCount++;
    this.size += bytes;
    for (const line of batch) line.onDurable?.();
    for (const line of batch) line.resolve();
  }
}
