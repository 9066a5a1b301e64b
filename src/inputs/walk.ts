// Streams the files of directory trees for `scan`, reporting every unusable entry as a skip instead of throwing.

import { isUtf8 } from 'node:buffer';
import {
  type Dir,
  type Dirent,
  lstat as lstatCallback,
  lstatSync,
  type Stats,
  stat as statCallback,
  statSync,
} from 'node:fs';
import { opendir, statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
// Skip reasons are the catalogue's (src/errors.ts), each filed under an error code.
import type { SkipReason } from '../errors.js';

export interface WalkFile {
  kind: 'file';
  /** The root it was found under, absolute (resolved, symlinks kept). */
  root: string;
  /** Absolute path: `root/relative`. */
  path: string;
  /** Path below the root with `/` separators and no leading `./`: what shards hash. */
  relative: string;
  name: string;
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
  /**
   * On a file system the walk treats as local (LOCAL_FS): a read of the file never leaves the
   * machine, so a small one can be read synchronously (src/scheduler/pool.ts).
   */
  local: boolean;
}

export interface WalkSkip {
  kind: 'skip';
  /** Where it happened; a name that is not UTF-8 is shown percent-escaped (`swf%FF.stf`). */
  path: string;
  reason: SkipReason;
  message: string;
}

export type WalkEntry = WalkFile | WalkSkip;

export interface WalkOptions {
  recursive: boolean;
  /** Tested on base names only; see `compilePatterns`. */
  match: (name: string) => boolean;
  /** Follow symbolic links below the roots (the roots themselves are always followed). Default false. */
  followSymlinks?: boolean;
  /** Ends the walk early, without an error; check `signal.aborted` to tell a partial walk from a full one. */
  signal?: AbortSignal;
  /**
   * Overlapped asynchronous stats everywhere, as on a network file system; by default a local file
   * system is walked with synchronous calls (see LOCAL_FS). Tests use it to cover both ways.
   */
  overlapStats?: boolean;
}

/**
 * Entries read per step of the walk (and buffered per open directory). Memory is
 * O(depth × DIR_BUFFER), never O(files): a tree of a million files walks in the memory of a few
 * directories.
 */
const DIR_BUFFER = 256;
/**
 * On a slow file system, stat calls kept in flight within one directory. On NFS, Lustre or EOS FUSE a
 * stat is a network round trip; overlapping a few dozen hides that latency (libuv runs them on its
 * thread pool).
 */
const STAT_BATCH = 32;
/**
 * On a local file system (LOCAL_FS) the walk lists and stats synchronously: a stat of a cached inode
 * takes a few µs, and its asynchronous form costs three to four times that in hand-offs to libuv's
 * threads, promises and wake-ups (100,000 files on ext4, loaded machine: 7–14 µs per lstatSync,
 * 23–42 µs per overlapped lstat; BENCHMARKS.md). A synchronous step ends after STEP_BUDGET_MS and the
 * walk then lets the event loop run, so the main thread stalls at most that long (plus one call).
 * Elsewhere (NFS, Lustre, EOS FUSE, anything not in the list) a stat can be a network round trip,
 * and the walk overlaps STAT_BATCH of them asynchronously. The type is read with statfs where the
 * device changes, so a network mount below a local root is walked as a network one.
 */
const STEP_BUDGET_MS = 8;

/** f_type magic numbers (linux/magic.h) of file systems whose stat never leaves the machine. */
const LOCAL_FS = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0x794c7630, // overlayfs (containers)
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0xca451a4e, // bcachefs
  0x73717368, // squashfs
]);

/**
 * The asynchronous calls: Node 20's callback binding, promisified, spends about a third less CPU per
 * call than fs/promises' (measured: 2.3 s against 3.2 s for 100,000 files).
 */
const lstatAsync = promisify(lstatCallback);
const statAsync = promisify(statCallback);

interface Frame {
  dir: Dir;
  /** Absolute path with a trailing `/`, so children are `prefix + name`. */
  prefix: string;
  /** Relative path with a trailing `/` ('' at the root). */
  relative: string;
  /** `dev:ino` of the directory, to recognise a symlink leading back to an ancestor. */
  id: string;
  /** Listed and stat'ed synchronously: the directory is on a local file system. */
  sync: boolean;
}

interface Walker {
  root: string;
  options: WalkOptions;
  follow: boolean;
  /** Open directories from the root down to the current one. */
  stack: Frame[];
  /** Whether each device seen is a local file system (see LOCAL_FS). */
  local: Map<bigint, boolean>;
}

/**
 * Yields every regular file under `roots` whose base name matches, and one skip for each entry it cannot
 * use: a matching name that is a symlink not followed, a dangling symlink, a FIFO or a device
 * (`NOT_A_FILE`/`ENOENT`), a zero-byte file, a name that is not UTF-8, a directory that cannot be read or
 * vanished, a symlink leading back to one of its own ancestors (`ELOOP`). It never throws for a
 * file system condition.
 *
 * Order is directory order (what the file system returns), depth first; nothing is sorted, since
 * sorting needs the whole listing in memory and the callers (scan, shards) do not depend on order.
 *
 * Symlinks are not followed by default, like `find`: following can reach the same file twice and can
 * leave the data roots. With `followSymlinks`, a link to a directory is walked unless it leads back to
 * an ancestor (ELOOP, so loops terminate); a directory or file reached by two links is yielded twice
 * (dedupe on `dev`/`ino` if that matters).
 *
 * Names that are not valid UTF-8 cannot be carried in `stf_filename` or a `file_url`, so they are
 * skipped as `NOT_UTF8`; directories are read as raw bytes to see them at all (a UTF-8 read would turn
 * them into U+FFFD, a name that does not exist and that a genuine U+FFFD name cannot be told from).
 * Patterns are tested on the latin1 reading of such a name, which keeps ASCII globs like `*.stf` exact.
 * A directory whose name is not UTF-8 is reported once and not entered.
 */
export async function* walk(roots: readonly string[], options: WalkOptions): AsyncGenerator<WalkEntry> {
  for await (const batch of walkBatches(roots, options)) {
    for (const entry of batch) {
      if (options.signal?.aborted) return;
      yield entry;
    }
  }
}

/**
 * The same entries as `walk`, in the same order, a step at a time (at most DIR_BUFFER entries, all
 * from one directory): a consumer pays one `await` per step instead of one per file, and can look
 * a step's files up in one query (scan's ledger check).
 */
export async function* walkBatches(
  roots: readonly string[],
  options: WalkOptions,
): AsyncGenerator<WalkEntry[]> {
  for (const root of roots) {
    if (options.signal?.aborted) return;
    const walker: Walker = {
      root: path.resolve(root),
      options,
      follow: options.followSymlinks ?? false,
      stack: [],
      local: new Map(),
    };
    try {
      yield* walkRoot(walker);
    } finally {
      // Runs on early exit too (a consumer's `break`, an abort), so no directory handle leaks.
      for (const frame of walker.stack.splice(0)) await frame.dir.close().catch(() => {});
    }
  }
}

async function* walkRoot(w: Walker): AsyncGenerator<WalkEntry[]> {
  const opened = await openDirectory(w, w.root, '');
  if (opened) {
    yield [opened];
    return;
  }
  while (w.stack.length > 0 && !w.options.signal?.aborted) {
    const frame = w.stack[w.stack.length - 1] as Frame;
    const step = frame.sync ? readStepSync(w, frame) : await readStep(w, frame);
    // A synchronous step did not give the event loop a turn: give it one (timers, sockets).
    if (frame.sync) await new Promise<void>((resolve) => setImmediate(resolve));
    const entries = step.entries.some((e) => e instanceof Promise)
      ? await Promise.all(step.entries)
      : (step.entries as WalkEntry[]);
    if (w.options.signal?.aborted) return;
    if (entries.length > 0) yield entries;
    if (step.done) {
      w.stack.pop();
      await frame.dir.close().catch(() => {});
    } else if (step.descend) {
      const skipped = await openDirectory(w, step.descend.path, step.descend.relative);
      if (skipped) yield [skipped];
    }
  }
}

interface Target {
  path: string;
  relative: string;
  name: string;
  /** The directory it is listed in is on a local file system. */
  local: boolean;
}

interface Step {
  /** In directory order; a pending stat resolves to its entry. */
  entries: Array<WalkEntry | Promise<WalkEntry>>;
  /** A subdirectory to enter before reading on, once `entries` are out. */
  descend?: Target;
  /** The directory is exhausted (or failed, reported in `entries`). */
  done: boolean;
}

/** What a directory entry needs next: nothing, a stat, a link to resolve, a directory to enter. */
type Found = WalkEntry | { stat: Target } | { descend: Target } | { link: Target; matches: boolean } | null;

/** Reads entries of `frame` synchronously until a subdirectory, the end, DIR_BUFFER entries or STEP_BUDGET_MS. */
function readStepSync(w: Walker, frame: Frame): Step {
  const entries: WalkEntry[] = [];
  const started = performance.now();
  for (let read = 0; read < DIR_BUFFER; read++) {
    if (w.options.signal?.aborted || performance.now() - started > STEP_BUDGET_MS) break;
    let dirent: Dirent<Buffer> | null;
    try {
      dirent = frame.dir.readSync() as unknown as Dirent<Buffer> | null;
    } catch (err) {
      entries.push(skip(frame.prefix, err, 'cannot read directory'));
      return { entries, done: true };
    }
    if (dirent === null) return { entries, done: true };
    const inspected = inspect(w, frame, dirent);
    const found =
      inspected !== null && 'link' in inspected
        ? followLinkSync(w, inspected.link, inspected.matches)
        : inspected;
    if (found === null) continue;
    if ('descend' in found) return { entries, descend: found.descend, done: false };
    entries.push('stat' in found ? statFileSync(w, found.stat) : found);
  }
  return { entries, done: false };
}

/** Reads entries of `frame` until a subdirectory, the end, or a full batch of overlapped stats. */
async function readStep(w: Walker, frame: Frame): Promise<Step> {
  const entries: Step['entries'] = [];
  let pending = 0;
  while (pending < STAT_BATCH && !w.options.signal?.aborted) {
    let dirent: Dirent<Buffer> | null;
    try {
      dirent = (await frame.dir.read()) as unknown as Dirent<Buffer> | null;
    } catch (err) {
      entries.push(skip(frame.prefix, err, 'cannot read directory'));
      return { entries, done: true };
    }
    if (dirent === null) return { entries, done: true };
    const inspected = inspect(w, frame, dirent);
    const found =
      inspected !== null && 'link' in inspected
        ? await followLink(w, inspected.link, inspected.matches)
        : inspected;
    if (found === null) continue;
    if ('descend' in found) return { entries, descend: found.descend, done: false };
    if ('stat' in found) {
      pending++;
      entries.push(statFile(w, found.stat));
    } else {
      entries.push(found);
    }
  }
  return { entries, done: false };
}

/** What one directory entry becomes, from its name and type alone where possible. */
function inspect(w: Walker, frame: Frame, dirent: Dirent<Buffer>): Found {
  if (!isUtf8(dirent.name)) return notUtf8(w, frame, dirent);
  const name = dirent.name.toString('utf8');
  const target = { path: frame.prefix + name, relative: frame.relative + name, name, local: frame.sync };
  if (dirent.isDirectory()) return w.options.recursive ? { descend: target } : null;
  const matches = w.options.match(name);
  if (dirent.isSymbolicLink()) {
    // A followed link of any name may lead to a directory to walk.
    if (w.follow) return matches || w.options.recursive ? { link: target, matches } : null;
    return matches ? notAFile(target, 'symbolic link, not followed') : null;
  }
  if (!matches) return null;
  if (dirent.isFile()) return { stat: target };
  return notAFile(target, `not a regular file (${typeOf(dirent)})`);
}

function notUtf8(w: Walker, frame: Frame, dirent: Dirent<Buffer>): WalkSkip | null {
  const shown = frame.prefix + percentEscape(dirent.name);
  if (dirent.isDirectory()) {
    if (!w.options.recursive) return null;
    return {
      kind: 'skip',
      path: shown,
      reason: 'NOT_UTF8',
      message: 'directory name is not UTF-8; not entered',
    };
  }
  if (!w.options.match(dirent.name.toString('latin1'))) return null;
  return {
    kind: 'skip',
    path: shown,
    reason: 'NOT_UTF8',
    message: 'file name is not UTF-8 (shown percent-escaped)',
  };
}

/**
 * Size and times of a matching file. lstat unless following links, so a file swapped for a symlink
 * after the listing is not followed either. A file gone since the listing is a skip, not an error.
 */
async function statFile(w: Walker, target: Target): Promise<WalkEntry> {
  try {
    return fileEntry(w, target, await (w.follow ? statAsync(target.path) : lstatAsync(target.path)));
  } catch (err) {
    return skip(target.path, err, 'cannot stat file');
  }
}

function statFileSync(w: Walker, target: Target): WalkEntry {
  try {
    return fileEntry(w, target, w.follow ? statSync(target.path) : lstatSync(target.path));
  } catch (err) {
    return skip(target.path, err, 'cannot stat file');
  }
}

async function followLink(
  w: Walker,
  target: Target,
  matches: boolean,
): Promise<WalkEntry | { descend: Target } | null> {
  let info: Stats;
  try {
    info = await statAsync(target.path);
  } catch (err) {
    return matches ? skip(target.path, err, 'symbolic link target') : null;
  }
  return linkTarget(w, target, matches, info);
}

function followLinkSync(w: Walker, target: Target, matches: boolean): WalkEntry | { descend: Target } | null {
  let info: Stats;
  try {
    info = statSync(target.path);
  } catch (err) {
    return matches ? skip(target.path, err, 'symbolic link target') : null;
  }
  return linkTarget(w, target, matches, info);
}

function linkTarget(
  w: Walker,
  target: Target,
  matches: boolean,
  info: Stats,
): WalkEntry | { descend: Target } | null {
  if (info.isDirectory()) return w.options.recursive ? { descend: target } : null;
  return matches ? fileEntry(w, target, info) : null;
}

function fileEntry(w: Walker, target: Target, info: Stats): WalkEntry {
  if (!info.isFile()) return notAFile(target, 'not a regular file');
  if (info.size === 0) {
    // Often a file still being created; a later scan sees it once it has content.
    return { kind: 'skip', path: target.path, reason: 'ZERO_BYTE', message: 'empty file' };
  }
  return {
    kind: 'file',
    root: w.root,
    path: target.path,
    relative: target.relative,
    name: target.name,
    size: info.size,
    mtimeMs: info.mtimeMs,
    ino: info.ino,
    dev: info.dev,
    // A followed link may lead to another device: local only if that one is known to be.
    local: target.local && (!w.follow || w.local.get(BigInt(info.dev)) === true),
  };
}

/**
 * Opens a directory and pushes it, or returns the skip that explains why not. Its identity comes from a
 * bigint stat, exact where 64-bit inode numbers exceed 2^53, so two directories never look alike.
 */
async function openDirectory(w: Walker, dirPath: string, relative: string): Promise<WalkSkip | null> {
  let id: string;
  let dir: Dir;
  let sync: boolean;
  try {
    const info = await statAsync(dirPath, { bigint: true });
    if (!info.isDirectory()) {
      return { kind: 'skip', path: dirPath, reason: 'ENOTDIR', message: 'not a directory (ENOTDIR)' };
    }
    id = `${info.dev}:${info.ino}`;
    const ancestor = w.stack.find((frame) => frame.id === id);
    if (ancestor) {
      const shown = ancestor.prefix.slice(0, -1) || '/';
      return { kind: 'skip', path: dirPath, reason: 'ELOOP', message: `leads back to ${shown}; not entered` };
    }
    dir = await openBufferDir(dirPath);
    sync = await isLocal(w, dirPath, info.dev);
  } catch (err) {
    return skip(dirPath, err, 'cannot open directory');
  }
  const prefix = dirPath.endsWith('/') ? dirPath : `${dirPath}/`;
  w.stack.push({ dir, prefix, relative: relative === '' ? '' : `${relative}/`, id, sync });
  return null;
}

/** Whether the directory's device is a local file system (see LOCAL_FS); statfs once per device. */
async function isLocal(w: Walker, dirPath: string, dev: bigint): Promise<boolean> {
  if (w.options.overlapStats) return false;
  let local = w.local.get(dev);
  if (local === undefined) {
    local = await statfs(dirPath).then(
      (info) => LOCAL_FS.has(info.type),
      () => false,
    );
    w.local.set(dev, local);
  }
  return local;
}

/**
 * opendir with raw-byte names. Node 20 honours `encoding: 'buffer'` (names come back as Buffers), but
 * @types/node 20 only admits string encodings for it, hence the casts.
 */
function openBufferDir(dirPath: string): Promise<Dir> {
  return opendir(dirPath, { encoding: 'buffer' as BufferEncoding, bufferSize: DIR_BUFFER });
}

const REASONS: Record<string, SkipReason> = {
  EACCES: 'EACCES',
  EPERM: 'EACCES',
  ENOENT: 'ENOENT',
  ENOTDIR: 'ENOTDIR',
  ELOOP: 'ELOOP',
};

const CAUSES: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'not found',
  ENOTDIR: 'not a directory',
  ELOOP: 'too many levels of symbolic links',
};

function skip(at: string, err: unknown, what: string): WalkSkip {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const reason = (code && REASONS[code]) || 'ERROR';
  const cause = (code && CAUSES[code]) || (err instanceof Error ? err.message : String(err));
  const shown = at.endsWith('/') && at.length > 1 ? at.slice(0, -1) : at;
  return { kind: 'skip', path: shown, reason, message: `${what}: ${cause}${code ? ` (${code})` : ''}` };
}

function notAFile(target: Target, message: string): WalkSkip {
  return { kind: 'skip', path: target.path, reason: 'NOT_A_FILE', message };
}

function typeOf(dirent: Dirent<Buffer>): string {
  if (dirent.isFIFO()) return 'FIFO';
  if (dirent.isSocket()) return 'socket';
  if (dirent.isCharacterDevice() || dirent.isBlockDevice()) return 'device';
  return 'unknown type';
}

/** Printable ASCII kept, every other byte (and `%`) as `%XX`: unambiguous, and valid in a URL. */
function percentEscape(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    out +=
      b > 0x20 && b < 0x7f && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
