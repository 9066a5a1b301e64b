// How task modules reach files: direct system calls in a pool worker, the libuv threadpool on the main thread.

import * as fs from 'node:fs';
import { isMainThread } from 'node:worker_threads';

/** The file operations an STF task needs, on plain descriptors. */
export interface FileAccess {
  readonly mode: 'direct' | 'threadpool';
  open(path: string, flags: 'r' | 'w'): Promise<number>;
  size(fd: number): Promise<number>;
  /** Reads up to `length` bytes at `position`; resolves with the count read (0 at the end). */
  read(fd: number, into: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Writes up to `length` bytes at `position`; resolves with the count written. */
  write(fd: number, from: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  truncate(fd: number, length: number): Promise<void>;
  close(fd: number): Promise<void>;
  realpath(path: string): Promise<string>;
  stat(path: string): Promise<fs.Stats>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  mkdirs(path: string): Promise<void>;
}

/**
 * In a pool worker, blocking is what the thread is for. An asynchronous fs call costs 30 to
 * 40 µs of CPU on the testbed's VMs (a hand-off to the libuv threadpool and a thread wake-up
 * each way; 160 µs for open, fstat, read and close through a FileHandle) where the system call
 * on a page-cached file takes 3 to 5 µs. A header read makes seven calls, which was more than
 * half of its CPU time, and the threadpool (four threads per process, shared by every worker)
 * stood between the workers and the disk. The main thread (the inline executor) keeps the
 * threadpool: a slow disk must not stall its event loop. The exception is a small STF a scan found
 * on a local file system, read here with these calls (src/scheduler/pool.ts, readsInline).
 */
export const directAccess: FileAccess = {
  mode: 'direct',
  open: async (path, flags) => fs.openSync(path, flags),
  size: async (fd) => fs.fstatSync(fd).size,
  read: async (fd, into, offset, length, position) => fs.readSync(fd, into, offset, length, position),
  write: async (fd, from, offset, length, position) => fs.writeSync(fd, from, offset, length, position),
  truncate: async (fd, length) => fs.ftruncateSync(fd, length),
  close: async (fd) => fs.closeSync(fd),
  realpath: async (path) => fs.realpathSync.native(path),
  stat: async (path) => fs.statSync(path),
  rename: async (from, to) => fs.renameSync(from, to),
  remove: async (path) => fs.rmSync(path, { force: true }),
  mkdirs: async (path) => {
    fs.mkdirSync(path, { recursive: true });
  },
};

/** Callback fs on plain descriptors: the cheapest asynchronous form (no FileHandle object per file). */
const threadpool: FileAccess = {
  mode: 'threadpool',
  open: (path, flags) => call<number>((done) => fs.open(path, flags, done)),
  size: (fd) => call<fs.Stats>((done) => fs.fstat(fd, done)).then((s) => s.size),
  read: (fd, into, offset, length, position) =>
    call<number>((done) => fs.read(fd, into, offset, length, position, done)),
  write: (fd, from, offset, length, position) =>
    call<number>((done) => fs.write(fd, from, offset, length, position, done)),
  truncate: (fd, length) => call<void>((done) => fs.ftruncate(fd, length, done)),
  close: (fd) => call<void>((done) => fs.close(fd, done)),
  realpath: (path) => call<string>((done) => fs.realpath.native(path, done)),
  stat: (path) => call<fs.Stats>((done) => fs.stat(path, done)),
  rename: (from, to) => call<void>((done) => fs.rename(from, to, done)),
  remove: (path) => call<void>((done) => fs.rm(path, { force: true }, done)),
  mkdirs: (path) => call<unknown>((done) => fs.mkdir(path, { recursive: true }, done)).then(() => {}),
};

/** The access of the thread this module was loaded in; tests swap in the other to cover both. */
export const files: FileAccess = { ...(isMainThread ? threadpool : directAccess) };

export function useFileAccess(mode: FileAccess['mode']): void {
  Object.assign(files, mode === 'direct' ? directAccess : threadpool);
}

/**
 * Waits for the data of every descriptor to reach the disk, all at once: the syncs wait on the
 * device, not the CPU, so they always go to the threadpool, where they overlap.
 */
export async function datasyncAll(fds: readonly number[]): Promise<void> {
  await Promise.all(fds.map((fd) => call<void>((done) => fs.fdatasync(fd, done))));
}

/** Makes renames in `dir` durable: the directory entry itself must reach the disk, not only the file. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await call<number>((done) => fs.open(dir, 'r', done));
  try {
    await call<void>((done) => fs.fsync(fd, done));
  } finally {
    await call<void>((done) => fs.close(fd, done));
  }
}

/** Writes all of `from[0, length)` at `position`: a single write may be short. */
export async function writeFully(
  fd: number,
  from: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  for (let done = 0; done < length; )
    done += await files.write(fd, from, done, length - done, position + done);
}

function call<T>(start: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}
