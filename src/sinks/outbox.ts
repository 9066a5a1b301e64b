// The registration outbox: work swf-monitor could not take yet, kept on disk (fsync'd) until it is replayed.

import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import { fsyncDirectory, reportLoad } from './durable.js';
import { Journal } from './journal.js';

// On disk (UTF-8, one record per line; JSON.stringify never emits a raw newline):
//   #swf-fastmon-outbox v1 next=<seq>      header; next= keeps sequence numbers growing across compactions
//   put\t<seq>\t<json payload>             an entry, in append order
//   done\t<seq>                            its tombstone, once replayed
const HEADER_PREFIX = '#swf-fastmon-outbox v1';
const NEWLINE = 0x0a;
const READ_CHUNK = 4 << 20;
const WRITE_CHUNK = 1 << 20;
const REWRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;
/** A small file is not worth rewriting for its tombstones, except an empty outbox, to end up tiny. */
const COMPACT_MIN_LINES = 1000;
const COMPACT_EMPTY_LINES = 100;
/** Past this many completed slots at the front, the in-memory queue drops them. */
const SLOTS_SLACK = 1024;

export interface OutboxOptions {
  /** Appends are refused (OUTBOX_FULL) while the file holds more than this. */
  maxBytes: number;
  logger?: Logger;
}

export interface OutboxEntry {
  seq: number;
  /** What was appended, as JSON.parse(JSON.stringify(payload)): the same before and after a restart. */
  payload: unknown;
}

/** What opening the outbox found, for logs and tests. */
export interface OutboxLoadReport {
  pending: number;
  lines: number;
  corrupt: number;
  /** Bytes of an unfinished last line (the writer died mid-write), cut off on open. */
  tornBytes: number;
  ms: number;
}

interface Slot {
  seq: number;
  json: string;
  done: boolean;
  completion: Promise<void> | undefined;
}

interface Scan {
  slots: Slot[];
  nextSeq: number;
  lines: number;
  corrupt: number[];
  /** Length of the file up to its last newline. */
  end: number;
  torn: number;
}

/**
 * Append-only and loaded into memory on open; append() and complete() resolve once their line is
 * fdatasync'd, many callers sharing one sync. One process per outbox file.
 */
export class Outbox {
  private slots: Slot[];
  private head = 0;
  private readonly live = new Map<number, Slot>();
  private nextSeq: number;
  private lineCount: number;
  /** Lines made durable in the old file while a compaction writes the new one; copied over at the swap. */
  private tail: string[] | null = null;
  private compaction: Promise<void> | null = null;
  private retryCompactionAt = 0;
  private compactionCount = 0;
  private alarmed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly file: string,
    private readonly journal: Journal,
    private readonly maxBytes: number,
    private readonly logger: Logger,
    scan: Scan,
    readonly loaded: OutboxLoadReport,
  ) {
    this.slots = scan.slots;
    for (const slot of scan.slots) this.live.set(slot.seq, slot);
    this.nextSeq = scan.nextSeq;
    this.lineCount = scan.lines;
  }

  static async open(file: string, options: OutboxOptions): Promise<Outbox> {
    const { maxBytes, logger = silentLogger() } = options;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new FastmonError(
        'CONFIG_INVALID',
        `outbox option maxBytes must be a positive integer, got ${maxBytes}`,
      );
    }
    const resolved = path.resolve(file);
    const started = performance.now();
    const handle = await openOutboxFile(resolved);
    let outbox: Outbox;
    try {
      const scan = await scanOutbox(handle, resolved);
      const size = await repairTail(handle, scan);
      await fsyncDirectory(path.dirname(resolved));
      const report: OutboxLoadReport = {
        pending: scan.slots.length,
        lines: scan.lines,
        corrupt: scan.corrupt.length,
        tornBytes: scan.torn,
        ms: Math.round(performance.now() - started),
      };
      const journal = new Journal(handle, size, (what, err) => ioError(what, resolved, err));
      outbox = new Outbox(resolved, journal, maxBytes, logger, scan, report);
      reportLoad(outbox.logger, 'outbox', outbox.file, scan, outbox.loaded);
    } catch (err) {
      await handle.close().catch(() => {});
      throw isFastmonError(err) ? err : ioError('cannot load', resolved, err);
    }
    // Everything replayed before the last stop: shrink to the header now rather than after 100 more lines.
    if (outbox.depth === 0 && outbox.lines > 0)
      await outbox.compact().catch((err) => outbox.compactionFailed(err));
    outbox.maybeCompact();
    outbox.checkLimit();
    return outbox;
  }

  /** Entries appended and not completed. */
  get depth(): number {
    return this.live.size;
  }

  /** Size of the file (durable lines). */
  get bytes(): number {
    return this.journal.bytes;
  }

  /** True while appends are refused: the file, with what is queued for it, is over maxBytes. */
  get full(): boolean {
    return this.journal.bytes + this.journal.queuedBytes > this.maxBytes;
  }

  /** Lines in the file (entries, tombstones and skipped corrupt lines), the header excluded. */
  get lines(): number {
    return this.lineCount;
  }

  /** fdatasync calls made for append() and complete(): one per group commit. */
  get syncs(): number {
    return this.journal.syncs;
  }

  get compactions(): number {
    return this.compactionCount;
  }

  /** Resolves with the entry's sequence number once it is durable. */
  async append(payload: unknown): Promise<number> {
    if (this.closing) throw closedError(this.file);
    const json = JSON.stringify(payload);
    if (json === undefined)
      throw new TypeError(`outbox payload must be JSON-serialisable, got ${typeof payload}`);
    if (this.checkLimit()) throw this.fullError();
    const seq = this.nextSeq++;
    const line = `put\t${seq}\t${json}\n`;
    await this.journal.append(line, () => {
      const slot: Slot = { seq, json, done: false, completion: undefined };
      this.slots.push(slot);
      this.live.set(seq, slot);
      this.committed(line);
    });
    this.checkLimit();
    this.maybeCompact();
    return seq;
  }

  /** Pending entries, oldest first; entries appended or completed during the iteration may or may not show. */
  *pending(): IterableIterator<OutboxEntry> {
    let slots = this.slots;
    let lastSeq = 0;
    for (let i = this.head; ; i++) {
      // The queue drops completed slots now and then; continue after the last entry yielded.
      if (slots !== this.slots) {
        slots = this.slots;
        i = firstAfter(slots, lastSeq);
      }
      const slot = slots[i];
      if (slot === undefined) return;
      if (slot.done) continue;
      lastSeq = slot.seq;
      yield { seq: slot.seq, payload: JSON.parse(slot.json) };
    }
  }

  /** Resolves once the entry's tombstone is durable; completing an unknown or completed entry does nothing. */
  async complete(seq: number): Promise<void> {
    const slot = this.live.get(seq);
    if (slot === undefined) return;
    if (this.closing) throw closedError(this.file);
    slot.completion ??= this.writeTombstone(slot);
    await slot.completion;
    this.checkLimit();
    this.maybeCompact();
  }

  /**
   * Rewrites the file with only the pending entries, atomically (temp file, fsync, rename, directory
   * fsync). Appends and completes keep flowing meanwhile: they go to the old file and are copied to the
   * new one at the swap, the only moment they wait.
   */
  compact(): Promise<void> {
    if (this.journal.failure) return Promise.reject(this.journal.failure);
    this.compaction ??= this.rewrite().finally(() => {
      this.compaction = null;
    });
    return this.compaction;
  }

  /** Writes what is queued, lets a running compaction finish, shrinks an empty outbox, closes the file. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    await this.compaction?.catch(() => {});
    await this.journal.idle();
    if (this.depth === 0 && this.lineCount > 0 && !this.journal.failure) {
      await this.compact().catch((err) => this.compactionFailed(err));
    }
    await this.journal.close();
  }

  private writeTombstone(slot: Slot): Promise<void> {
    const line = `done\t${slot.seq}\n`;
    const written = this.journal.append(line, () => {
      slot.done = true;
      this.live.delete(slot.seq);
      this.dropCompletedFront();
      this.committed(line);
    });
    return written.catch((err: unknown) => {
      slot.completion = undefined;
      throw err;
    });
  }

  private committed(line: string): void {
    this.lineCount++;
    this.tail?.push(line);
  }

  private dropCompletedFront(): void {
    while (this.slots[this.head]?.done) this.head++;
    if (this.head > SLOTS_SLACK && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
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
    const bytes = this.bytes + this.journal.queuedBytes;
    return new FastmonError(
      'OUTBOX_FULL',
      `outbox ${this.file} holds ${bytes} bytes, over its limit of ${this.maxBytes} bytes`,
      { outbox: this.file, bytes, maxBytes: this.maxBytes, depth: this.depth },
    );
  }

  private compactionDue(): boolean {
    const lines = this.lineCount;
    const live = this.live.size;
    if (live === 0) return lines >= COMPACT_EMPTY_LINES;
    if (lines > COMPACT_MIN_LINES && live * 4 < lines) return true;
    // A full outbox refuses work, so reclaiming the space of replayed entries is worth a rewrite sooner.
    return this.bytes > this.maxBytes && live * 2 < lines;
  }

  private maybeCompact(): void {
    if (this.compaction || this.closing || this.journal.failure || this.lineCount < this.retryCompactionAt)
      return;
    if (this.compactionDue()) this.compact().catch((err) => this.compactionFailed(err));
  }

  private compactionFailed(err: unknown): void {
    // Retried once the file has doubled, not after every batch (a full disk stays full for a while).
    this.retryCompactionAt = this.lineCount * 2;
    this.logger.warn({ err, outbox: this.file }, 'outbox compaction failed; the file keeps growing');
  }

  private async rewrite(): Promise<void> {
    const temp = `${this.file}.compacting`;
    const tail: string[] = [];
    // From here on every durable line is also kept for the new file, whether or not the snapshot has it.
    this.tail = tail;
    const snapshot = this.slots.slice(this.head).filter((slot) => !slot.done);
    const header = headerLine(this.nextSeq);
    let next: FileHandle | null = null;
    let adopted = false;
    try {
      next = await open(temp, REWRITE_FLAGS, 0o644);
      const written = await writeSnapshot(next, header, snapshot);
      const handle = next;
      await this.journal.exclusive(async () => {
        if (this.journal.failure) throw this.journal.failure;
        const text = tail.join('');
        if (text.length > 0) await handle.appendFile(text);
        await handle.sync();
        await rename(temp, this.file);
        adopted = true;
        this.tail = null;
        const previous = this.journal.replace(handle, written + Buffer.byteLength(text));
        this.lineCount = snapshot.length + tail.length;
        this.compactionCount++;
        await previous.close().catch(() => {});
        try {
          await fsyncDirectory(path.dirname(this.file));
        } catch (err) {
          // Without it the rename may not survive a power cut, and neither would later lines.
          throw this.journal.poison('cannot sync the directory of', err);
        }
      });
    } catch (err) {
      throw isFastmonError(err) ? err : ioError('cannot compact', this.file, err);
    } finally {
      this.tail = null;
      if (next && !adopted) {
        await next.close().catch(() => {});
        await rm(temp, { force: true }).catch(() => {});
      }
    }
    this.checkLimit();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading

async function scanOutbox(handle: FileHandle, file: string): Promise<Scan> {
  const scan: Scan = { slots: [], nextSeq: 1, lines: 0, corrupt: [], end: 0, torn: 0 };
  const bySeq = new Map<number, Slot>();
  let buf = Buffer.allocUnsafe(READ_CHUNK);
  let filled = 0;
  let lineNumber = 0;
  let maxSeq = 0;
  for (;;) {
    if (filled === buf.length) buf = Buffer.concat([buf], buf.length * 2); // a line longer than the buffer
    const { bytesRead } = await handle.read(buf, filled, buf.length - filled, scan.end + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
    const view = buf.subarray(0, filled);
    // Checked before anything is parsed: appending to some other file would damage it.
    if (scan.end === 0 && !startsLikeHeader(view)) throw notAnOutbox(file);
    let start = 0;
    for (let newline = view.indexOf(NEWLINE); newline >= 0; newline = view.indexOf(NEWLINE, start)) {
      lineNumber++;
      const text = view.toString('utf8', start, newline);
      if (lineNumber === 1) scan.nextSeq = parseHeader(text) ?? 1;
      else if (!applyLine(text, bySeq, scan.slots)) scan.corrupt.push(lineNumber);
      start = newline + 1;
    }
    buf.copyWithin(0, start, filled);
    scan.end += start;
    filled -= start;
  }
  for (const slot of scan.slots) maxSeq = Math.max(maxSeq, slot.seq);
  scan.slots = scan.slots.filter((slot) => !slot.done);
  scan.nextSeq = Math.max(scan.nextSeq, maxSeq + 1);
  scan.lines = Math.max(lineNumber - 1, 0);
  scan.torn = filled;
  return scan;
}

/** Applies one line; false when it is not a well-formed outbox line. */
function applyLine(text: string, bySeq: Map<number, Slot>, slots: Slot[]): boolean {
  if (text.startsWith('done\t')) {
    const seq = parseSeq(text.slice(5));
    const slot = bySeq.get(seq);
    if (slot) slot.done = true;
    bySeq.delete(seq);
    return !Number.isNaN(seq);
  }
  if (!text.startsWith('put\t')) return false;
  const tab = text.indexOf('\t', 4);
  const seq = tab < 0 ? Number.NaN : parseSeq(text.slice(4, tab));
  if (Number.isNaN(seq) || bySeq.has(seq)) return false;
  const json = text.slice(tab + 1);
  try {
    JSON.parse(json);
  } catch {
    return false;
  }
  const slot: Slot = { seq, json, done: false, completion: undefined };
  bySeq.set(seq, slot);
  slots.push(slot);
  return true;
}

function parseSeq(text: string): number {
  return /^[1-9][0-9]{0,15}$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : Number.NaN;
}

function headerLine(nextSeq: number): string {
  return `${HEADER_PREFIX} next=${nextSeq}\n`;
}

function parseHeader(text: string): number | undefined {
  const match = /^#swf-fastmon-outbox v1(?: next=([0-9]+))?$/.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** The header, or the part of it a writer that died while creating the file got out. */
function startsLikeHeader(bytes: Buffer): boolean {
  const probe = bytes.toString('latin1', 0, Math.min(bytes.length, HEADER_PREFIX.length));
  return HEADER_PREFIX.startsWith(probe);
}

function firstAfter(slots: Slot[], seq: number): number {
  let low = 0;
  let high = slots.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (slots[mid]!.seq <= seq) low = mid + 1;
    else high = mid;
  }
  return low;
}

// ---------------------------------------------------------------------------------------------------------
// Files

async function openOutboxFile(file: string): Promise<FileHandle> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await rm(`${file}.compacting`, { force: true }); // left behind by a compaction cut short
    return await open(file, 'a+');
  } catch (err) {
    throw ioError('cannot open', file, err);
  }
}

/** Cuts off an unfinished last line, so the next append does not glue an entry to it; writes the header. */
async function repairTail(handle: FileHandle, scan: Scan): Promise<number> {
  if (scan.torn > 0) await handle.truncate(scan.end);
  if (scan.end > 0) {
    if (scan.torn > 0) await handle.datasync();
    return scan.end;
  }
  const header = headerLine(scan.nextSeq);
  await handle.appendFile(header);
  await handle.datasync();
  return Buffer.byteLength(header);
}

/** Writes the header and the entries; returns the bytes written. */
async function writeSnapshot(handle: FileHandle, header: string, slots: Slot[]): Promise<number> {
  let bytes = 0;
  let chunk = header;
  for (const slot of slots) {
    chunk += `put\t${slot.seq}\t${slot.json}\n`;
    if (chunk.length < WRITE_CHUNK) continue;
    await handle.appendFile(chunk);
    bytes += Buffer.byteLength(chunk);
    chunk = '';
  }
  await handle.appendFile(chunk);
  return bytes + Buffer.byteLength(chunk);
}

function ioError(what: string, file: string, err: unknown): FastmonError {
  return new FastmonError(
    'OUTBOX_WRITE_FAILED',
    `${what} outbox ${file}: ${messageOf(err)}`,
    { outbox: file },
    { cause: err },
  );
}

function closedError(file: string): FastmonError {
  return new FastmonError('SHUTDOWN', `outbox ${file} is closed`, { outbox: file });
}

function notAnOutbox(file: string): FastmonError {
  return new FastmonError(
    'CONFIG_INVALID',
    `${file} is not a swf-fastmon outbox (its first line is not "${HEADER_PREFIX} next=…")`,
    { outbox: file },
  );
}
