// Streams the files of directory trees for `scan`, reporting every unusable entry as a skip instead of throwing.

import { isUtf8 } from 'node:buffer';
import { type Dir, type Dirent, lstat as lstatCallback, type Stats, stat as statCallback } from 'node:fs';
import { opendir } from 'node:fs/promises';
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
}

/**
 * Entries buffered per open directory. Memory is O(depth × DIR_BUFFER + STAT_BATCH), never O(files):
 * a tree of a million files walks in the memory of a few directories.
 */
const DIR_BUFFER = 256;
/**
 * stat calls kept in flight within one directory. On NFS, Lustre or EOS FUSE a stat is a network round
 * trip; overlapping a few dozen hides that latency (libuv runs them on its thread pool).
 */
const STAT_BATCH = 32;

/**
 * One stat per matching file is most of a scan's cost. Node 20's callback binding, promisified, spends
 * about a third less CPU per call than fs/promises' (measured: 2.3 s against 3.2 s for 100,000 files).
 */
const lstat = promisify(lstatCallback);
const stat = promisify(statCallback);

interface Frame {
  dir: Dir;
  /** Absolute path with a trailing `/`, so children are `prefix + name`. */
  prefix: string;
  /** Relative path with a trailing `/` ('' at the root). */
  relative: string;
  /** `dev:ino` of the directory, to recognise a symlink leading back to an ancestor. */
  id: string;
}

interface Walker {
  root: string;
  options: WalkOptions;
  follow: boolean;
  /** Open directories from the root down to the current one. */
  stack: Frame[];
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
  for (const root of roots) {
    if (options.signal?.aborted) return;
    const walker: Walker = {
      root: path.resolve(root),
      options,
      follow: options.followSymlinks ?? false,
      stack: [],
    };
    try {
      yield* walkRoot(walker);
    } finally {
      // Runs on early exit too (a consumer's `break`, an abort), so no directory handle leaks.
      for (const frame of walker.stack.splice(0)) await frame.dir.close().catch(() => {});
    }
  }
}

async function* walkRoot(w: Walker): AsyncGenerator<WalkEntry> {
  const opened = await openDirectory(w, w.root, '');
  if (opened) {
    yield opened;
    return;
  }
  while (w.stack.length > 0 && !w.options.signal?.aborted) {
    const frame = w.stack[w.stack.length - 1] as Frame;
    const step = await readStep(w, frame);
    for (const entry of await Promise.all(step.entries)) {
      if (w.options.signal?.aborted) return;
      yield entry;
    }
    if (step.done) {
      w.stack.pop();
      await frame.dir.close().catch(() => {});
    } else if (step.descend) {
      const skipped = await openDirectory(w, step.descend.path, step.descend.relative);
      if (skipped) yield skipped;
    }
  }
}

interface Target {
  path: string;
  relative: string;
  name: string;
}

interface Step {
  /** In directory order; a pending stat resolves to its entry. */
  entries: Array<WalkEntry | Promise<WalkEntry>>;
  /** A subdirectory to enter before reading on, once `entries` are out. */
  descend?: Target;
  /** The directory is exhausted (or failed, reported in `entries`). */
  done: boolean;
}

type Found = WalkEntry | Promise<WalkEntry> | { descend: Target } | { link: Target; matches: boolean } | null;

/** Reads entries of `frame` until a subdirectory, the end, or a full batch of stats. */
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
    if (found instanceof Promise) pending++;
    entries.push(found);
  }
  return { entries, done: false };
}

/** What one directory entry becomes, from its name and type alone where possible. */
function inspect(w: Walker, frame: Frame, dirent: Dirent<Buffer>): Found {
  if (!isUtf8(dirent.name)) return notUtf8(w, frame, dirent);
  const name = dirent.name.toString('utf8');
  const target = { path: frame.prefix + name, relative: frame.relative + name, name };
  if (dirent.isDirectory()) return w.options.recursive ? { descend: target } : null;
  const matches = w.options.match(name);
  if (dirent.isSymbolicLink()) {
    // A followed link of any name may lead to a directory to walk.
    if (w.follow) return matches || w.options.recursive ? { link: target, matches } : null;
    return matches ? notAFile(target, 'symbolic link, not followed') : null;
  }
  if (!matches) return null;
  if (dirent.isFile()) return statFile(w, target);
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
    return fileEntry(w, target, await (w.follow ? stat(target.path) : lstat(target.path)));
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
    info = await stat(target.path);
  } catch (err) {
    return matches ? skip(target.path, err, 'symbolic link target') : null;
  }
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
  };
}

/**
 * Opens a directory and pushes it, or returns the skip that explains why not. Its identity comes from a
 * bigint stat, exact where 64-bit inode numbers exceed 2^53, so two directories never look alike.
 */
async function openDirectory(w: Walker, dirPath: string, relative: string): Promise<WalkSkip | null> {
  let id: string;
  let dir: Dir;
  try {
    const info = await stat(dirPath, { bigint: true });
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
  } catch (err) {
    return skip(dirPath, err, 'cannot open directory');
  }
  const prefix = dirPath.endsWith('/') ? dirPath : `${dirPath}/`;
  w.stack.push({ dir, prefix, relative: relative === '' ? '' : `${relative}/`, id });
  return null;
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
