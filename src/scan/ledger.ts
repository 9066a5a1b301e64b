// The processed-file ledger: which STF files were handled, durable across restarts and kill -9.

import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import { fsyncDirectory, reportLoad, writeAll } from '../sinks/durable.js';
import { KeyIndex } from './key-index.js';
import {
  DEAD,
  escapeKey,
  FORGET,
  FORGET_BYTES,
  HEADER,
  MAX_VALUE_BYTES,
  NEWLINE,
  OUTCOME_BYTES,
  OUTCOMES,
  READ_CHUNK,
  REWRITE_FLAGS,
  SNAPSHOT_CHUNK,
  TAB,
} from './ledger-format.js';

export { escapeKey, unescapeKey } from './ledger-format.js';

export type LedgerOutcome = 'sampled' | 'skipped' | 'failed';

export interface LedgerRecord {
  size: number;
  mtimeMs: number;
  outcome: LedgerOutcome;
}

export interface LedgerOptions {
  /** Compact when the file holds more than this many lines per live entry (default 2, at least 1). */
  compactAtRatio?: number;
  /** …and at least this many lines (default 10,000), so a small ledger is never rewritten. */
  minCompactEntries?: number;
  logger?: Logger;
}

/** What opening the ledger found, for logs and tests. */
export interface LedgerLoadReport {
  entries: number;
  lines: number;
  corrupt: number;
  /** Bytes of an unfinished last line (the writer died mid-write), cut off on open. */
  tornBytes: number;
  ms: number;
}

// ---------------------------------------------------------------------------------------------------------
// Loading: lines are parsed straight from the read buffer into the index.

interface Scan {
  lines: number;
  corrupt: number[];
  /** Length of the file up to its last newline. */
  end: number;
  /** Bytes after the last newline. */
  torn: number;
}

async function scanLedger(handle: FileHandle, file: string, index: KeyIndex): Promise<Scan> {
  const scan: Scan = { lines: 0, corrupt: [], end: 0, torn: 0 };
  const fileSize = (await handle.stat()).size;
  let buf = Buffer.allocUnsafe(READ_CHUNK);
  let filled = 0;
  let lineNumber = 0;
  for (;;) {
    if (filled === buf.length) buf = Buffer.concat([buf], buf.length * 2); // a line longer than the buffer
    const { bytesRead } = await handle.read(buf, filled, buf.length - filled, scan.end + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
    const view = buf.subarray(0, filled);
    // Checked before anything is parsed: appending to some other file would damage it.
    if (scan.end === 0 && !startsLikeHeader(view)) throw notALedger(file);
    let start = 0;
    for (let newline = view.indexOf(NEWLINE); newline >= 0; newline = view.indexOf(NEWLINE, start)) {
      lineNumber++;
      if (lineNumber > 1 && !applyLine(view, start, newline, index)) scan.corrupt.push(lineNumber);
      start = newline + 1;
    }
    // Keys take less than the file; lines are estimated from the first chunk's.
    if (scan.end === 0 && start > 0) index.reserve((fileSize / start) * lineNumber * 1.05, fileSize);
    buf.copyWithin(0, start, filled);
    scan.end += start;
    filled -= start;
  }
  scan.lines = Math.max(lineNumber - 1, 0);
  scan.torn = filled;
  return scan;
}

/** The header, or the part of it a writer that died while creating the file got out. */
function startsLikeHeader(bytes: Buffer): boolean {
  return HEADER.startsWith(bytes.toString('latin1', 0, Math.min(bytes.length, HEADER.length)));
}

function notALedger(file: string): FastmonError {
  return new FastmonError(
    'LEDGER_INVALID',
    `${file} is not a swf-fastmon ledger (its first line is not "${HEADER.trim()}")`,
    { ledger: file },
  );
}

/** Applies one line; false when it is not a well-formed ledger line. */
function applyLine(buf: Buffer, start: number, end: number, index: KeyIndex): boolean {
  const kindEnd = indexOfTab(buf, start, end);
  if (kindEnd < 0) return false;
  if (bytesEqual(buf, start, kindEnd, FORGET_BYTES)) {
    index.deleteBytes(buf, kindEnd + 1, end);
    return true;
  }
  const outcome = outcomeCode(buf, start, kindEnd);
  const sizeEnd = indexOfTab(buf, kindEnd + 1, end);
  const mtimeEnd = sizeEnd < 0 ? -1 : indexOfTab(buf, sizeEnd + 1, end);
  if (outcome === DEAD || mtimeEnd < 0) return false;
  const size = parseSize(buf, kindEnd + 1, sizeEnd);
  const mtimeMs = parseMtime(buf, sizeEnd + 1, mtimeEnd);
  if (Number.isNaN(size) || Number.isNaN(mtimeMs)) return false;
  index.setBytes(buf, mtimeEnd + 1, end, outcome, size, mtimeMs);
  return true;
}

function indexOfTab(buf: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i++) if (buf[i] === TAB) return i;
  return -1;
}

function bytesEqual(buf: Buffer, start: number, end: number, word: Buffer): boolean {
  if (end - start !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[start + i] !== word[i]) return false;
  return true;
}

function outcomeCode(buf: Buffer, start: number, end: number): number {
  for (let i = 0; i < OUTCOME_BYTES.length; i++) {
    if (bytesEqual(buf, start, end, OUTCOME_BYTES[i]!)) return i + 1;
  }
  return DEAD;
}

function parseSize(buf: Buffer, start: number, end: number): number {
  if (end === start || end - start > 16) return Number.NaN;
  let size = 0;
  for (let i = start; i < end; i++) {
    const digit = buf[i]! - 0x30;
    if (digit < 0 || digit > 9) return Number.NaN;
    size = size * 10 + digit;
  }
  return Number.isSafeInteger(size) ? size : Number.NaN;
}

/** Number() parses what String() printed, exactly; the byte checks keep it from accepting '' or ' '. */
function parseMtime(buf: Buffer, start: number, end: number): number {
  const plausible = end > start && isDigit(buf[end - 1]!) && (isDigit(buf[start]!) || buf[start] === 0x2d);
  return plausible ? Number(buf.toString('latin1', start, end)) : Number.NaN;
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

// ---------------------------------------------------------------------------------------------------------

interface PendingOp {
  line: string;
  key: string;
  outcome: number;
  size: number;
  mtimeMs: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Lines made durable in the old file while a compaction writes the new one; copied over at the swap. */
interface CompactionTail {
  texts: string[];
  lines: number;
}

/**
 * Append-only, one line per record or tombstone, loaded into memory on open (format and guarantees in
 * docs/ledger.md). record() and forget() resolve once their line is fdatasync'd; has() and get() show
 * only such durable state. One process per ledger file.
 */
export class Ledger {
  private readonly logger: Logger;
  private readonly compactAtRatio: number;
  private readonly minCompactEntries: number;
  private queue: PendingOp[] = [];
  private flushing: Promise<void> | null = null;
  private fileLock: Promise<void> = Promise.resolve();
  private tail: CompactionTail | null = null;
  private compaction: Promise<void> | null = null;
  private retryCompactionAt = 0;
  /** Set by a failed write or sync: the file's tail is unknown, and Linux may have dropped the pages. */
  private failure: FastmonError | null = null;
  private closing: Promise<void> | null = null;
  private lineCount: number;
  private syncCount = 0;
  private compactionCount = 0;

  private constructor(
    readonly file: string,
    private handle: FileHandle,
    private index: KeyIndex,
    readonly loaded: LedgerLoadReport,
    settings: Required<LedgerOptions>,
  ) {
    this.logger = settings.logger;
    this.compactAtRatio = settings.compactAtRatio;
    this.minCompactEntries = settings.minCompactEntries;
    this.lineCount = loaded.lines;
  }

  static async open(file: string, options: LedgerOptions = {}): Promise<Ledger> {
    const settings = validateOptions(options);
    const resolved = path.resolve(file);
    const started = performance.now();
    const handle = await openLedgerFile(resolved);
    const index = new KeyIndex();
    try {
      const scan = await scanLedger(handle, resolved, index);
      await repairTail(handle, scan);
      await fsyncDirectory(path.dirname(resolved));
      const report: LedgerLoadReport = {
        entries: index.live,
        lines: scan.lines,
        corrupt: scan.corrupt.length,
        tornBytes: scan.torn,
        ms: Math.round(performance.now() - started),
      };
      const ledger = new Ledger(resolved, handle, index, report, settings);
      reportLoad(ledger.logger, 'ledger', ledger.file, scan, ledger.loaded);
      ledger.maybeCompact();
      return ledger;
    } catch (err) {
      await handle.close().catch(() => {});
      throw isFastmonError(err) ? err : ioError('cannot load', resolved, err);
    }
  }

  /** Live entries. */
  get size(): number {
    return this.index.live;
  }

  /** Lines in the file (records, tombstones and skipped corrupt lines), the header excluded. */
  get lines(): number {
    return this.lineCount;
  }

  /** fdatasync calls made for record() and forget(): one per group commit. */
  get syncs(): number {
    return this.syncCount;
  }

  get compactions(): number {
    return this.compactionCount;
  }

  has(key: string): boolean {
    return this.index.find(escapeKey(key)) >= 0;
  }

  get(key: string): LedgerRecord | undefined {
    const id = this.index.find(escapeKey(key));
    return id < 0 ? undefined : this.index.recordAt(id);
  }

  /**
   * Live keys. A compaction during the iteration leaves it on the index as it was, so keys recorded or
   * forgotten meanwhile may or may not show.
   */
  *keys(): IterableIterator<string> {
    const index = this.index;
    for (let id = 0; id < index.count; id++) if (index.outcomes[id] !== DEAD) yield index.keyAt(id);
  }

  /** Resolves once the record is durable; recording a key again replaces its record. */
  async record(key: string, value: LedgerRecord): Promise<void> {
    checkKey(key);
    const outcome = OUTCOMES.indexOf(value.outcome) + 1;
    if (outcome === DEAD) throw new TypeError(`ledger outcome must be one of ${OUTCOMES.join(', ')}`);
    if (!Number.isSafeInteger(value.size) || value.size < 0) {
      throw new TypeError(`ledger size must be a non-negative integer, got ${value.size}`);
    }
    if (!Number.isFinite(value.mtimeMs)) {
      throw new TypeError(`ledger mtimeMs must be finite, got ${value.mtimeMs}`);
    }
    const canonical = escapeKey(key);
    const line = `${value.outcome}\t${value.size}\t${value.mtimeMs}\t${canonical}\n`;
    return this.enqueue(line, canonical, outcome, value.size, value.mtimeMs);
  }

  /** Resolves once a tombstone for the key is durable (for files that vanished or must be retried). */
  async forget(key: string): Promise<void> {
    checkKey(key);
    const canonical = escapeKey(key);
    return this.enqueue(`${FORGET}\t${canonical}\n`, canonical, DEAD, 0, 0);
  }

  /**
   * Rewrites the file with only the live entries, atomically. Records keep flowing meanwhile: they go to
   * the old file and are copied to the new one at the swap, the only moment they wait.
   */
  compact(): Promise<void> {
    if (this.closing) return Promise.reject(closedError(this.file));
    if (this.failure) return Promise.reject(this.failure);
    this.compaction ??= this.rewrite().finally(() => {
      this.compaction = null;
    });
    return this.compaction;
  }

  /** Writes what is queued, lets a running compaction finish, and closes the file. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    await this.compaction?.catch(() => {});
    while (this.flushing) await this.flushing;
    await this.handle.close();
  }

  private enqueue(line: string, key: string, outcome: number, size: number, mtimeMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(closedError(this.file));
    return new Promise((resolve, reject) => {
      this.queue.push({ line, key, outcome, size, mtimeMs, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.exclusive(() => this.commit());
    } finally {
      this.flushing = null;
    }
  }

  /** Runs fn when no other file operation (a group commit, a compaction's swap) is running. */
  private exclusive(fn: () => Promise<void>): Promise<void> {
    const run = this.fileLock.then(fn);
    this.fileLock = run.catch(() => {});
    return run;
  }

  /** Group commit: everything queued while the previous batch was syncing goes in one write and one sync. */
  private async commit(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const text = batch.map((op) => op.line).join('');
    try {
      if (this.failure) throw this.failure;
      await this.handle.appendFile(text);
      await this.handle.datasync();
    } catch (err) {
      this.failure ??= ioError('cannot append to', this.file, err);
      for (const op of batch) op.reject(this.failure);
      return;
    }
    this.syncCount++;
    this.lineCount += batch.length;
    this.tail?.texts.push(text);
    if (this.tail) this.tail.lines += batch.length;
    for (const op of batch) this.apply(op);
    for (const op of batch) op.resolve();
    this.maybeCompact();
  }

  private apply(op: PendingOp): void {
    if (op.outcome === DEAD) this.index.delete(op.key);
    else this.index.set(op.key, op.outcome, op.size, op.mtimeMs);
  }

  private maybeCompact(): void {
    if (this.compaction || this.closing || this.failure || this.lineCount < this.retryCompactionAt) return;
    if (this.lineCount < this.minCompactEntries || this.lineCount <= this.compactAtRatio * this.size) return;
    this.compact().catch((err) => {
      // Retried once the file has doubled, not after every batch (a full disk stays full for a while).
      this.retryCompactionAt = this.lineCount * 2;
      this.logger.warn({ err, ledger: this.file }, 'ledger compaction failed; the file keeps growing');
    });
  }

  private async rewrite(): Promise<void> {
    const temp = `${this.file}.compacting`;
    const tail: CompactionTail = { texts: [], lines: 0 };
    // From here on every durable batch is also kept for the new file, whether or not the snapshot sees it.
    this.tail = tail;
    let next: FileHandle | null = null;
    try {
      next = await open(temp, REWRITE_FLAGS, 0o644);
      const written = await writeSnapshot(next, this.index);
      const handle = next;
      await this.exclusive(() => this.swapIn(handle, temp, written, tail));
    } catch (err) {
      throw isFastmonError(err) ? err : ioError('cannot compact', this.file, err);
    } finally {
      this.tail = null;
      if (next && next !== this.handle) {
        await next.close().catch(() => {});
        await rm(temp, { force: true }).catch(() => {});
      }
    }
  }

  /** Under the file lock: no batch is being written to the old file. */
  private async swapIn(next: FileHandle, temp: string, written: number, tail: CompactionTail): Promise<void> {
    if (tail.texts.length > 0) await next.appendFile(tail.texts.join(''));
    await next.sync();
    await rename(temp, this.file);
    const previous = this.handle;
    this.handle = next;
    this.tail = null;
    this.lineCount = written + tail.lines;
    this.compactionCount++;
    if ((this.index.count - this.index.live) * 4 > this.index.count) this.index = this.index.compacted();
    await previous.close().catch(() => {});
    try {
      await fsyncDirectory(path.dirname(this.file));
    } catch (err) {
      // Without it the rename may not survive a power cut, and neither would later records.
      this.failure = ioError('cannot sync the directory of', this.file, err);
      throw this.failure;
    }
  }
}

function validateOptions(options: LedgerOptions): Required<LedgerOptions> {
  const { compactAtRatio = 2, minCompactEntries = 10_000, logger = silentLogger() } = options;
  // Below 1 a freshly compacted file would already qualify, and compaction would never stop.
  if (!Number.isFinite(compactAtRatio) || compactAtRatio < 1) {
    throw new FastmonError(
      'CONFIG_INVALID',
      `ledger option compactAtRatio must be a number ≥ 1, got ${compactAtRatio}`,
    );
  }
  if (!Number.isSafeInteger(minCompactEntries) || minCompactEntries < 0) {
    throw new FastmonError(
      'CONFIG_INVALID',
      `ledger option minCompactEntries must be a non-negative integer, got ${minCompactEntries}`,
    );
  }
  return { compactAtRatio, minCompactEntries, logger };
}

function checkKey(key: string): void {
  if (typeof key !== 'string') throw new TypeError(`ledger key must be a string, got ${typeof key}`);
}

async function openLedgerFile(file: string): Promise<FileHandle> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await rm(`${file}.compacting`, { force: true }); // left behind by a compaction cut short
    return await open(file, 'a+');
  } catch (err) {
    throw ioError('cannot open', file, err);
  }
}

/** Cuts off an unfinished last line, so the next append does not glue a record to it; writes the header. */
async function repairTail(handle: FileHandle, scan: Scan): Promise<void> {
  if (scan.torn > 0) await handle.truncate(scan.end);
  if (scan.end === 0) await handle.appendFile(HEADER);
  if (scan.torn > 0 || scan.end === 0) await handle.datasync();
}

async function writeSnapshot(handle: FileHandle, index: KeyIndex): Promise<number> {
  let chunk = Buffer.allocUnsafe(SNAPSHOT_CHUNK);
  let used = chunk.write(HEADER, 0, 'latin1');
  let written = 0;
  // index.count is read on every turn: entries added while a chunk is written are included too.
  for (let id = 0; id < index.count; id++) {
    if (index.outcomes[id] === DEAD) continue;
    const room = index.lengths[id]! + MAX_VALUE_BYTES;
    if (used + room > chunk.length) {
      await writeAll(handle, chunk, used);
      used = 0;
      if (room > chunk.length) chunk = Buffer.allocUnsafe(room);
    }
    used = index.writeLine(id, chunk, used);
    written++;
  }
  await writeAll(handle, chunk, used);
  return written;
}

function ioError(what: string, file: string, err: unknown): FastmonError {
  return new FastmonError(
    'LEDGER_WRITE_FAILED',
    `${what} ledger ${file}: ${messageOf(err)}`,
    { ledger: file },
    { cause: err },
  );
}

function closedError(file: string): FastmonError {
  return new FastmonError('SHUTDOWN', `ledger ${file} is closed`, { ledger: file });
}
