// Checks of the files and directories a command is given, made before anything starts (no pool, no ledger yet).

import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { FastmonError } from '../errors.js';

const PROBLEMS: Record<string, string> = {
  ENOENT: 'does not exist',
  EACCES: 'permission denied',
  ENOTDIR: 'a part of the path is not a directory',
  ELOOP: 'too many symbolic links',
};

function problem(err: unknown): { text: string; errno: string | undefined } {
  const errno = (err as NodeJS.ErrnoException).code;
  return { text: (errno && PROBLEMS[errno]) ?? String((err as Error).message), errno };
}

/** A regular file we may read, e.g. `--replay FILE`. */
export function requireReadableFile(file: string, what: string): string {
  const resolved = path.resolve(file);
  try {
    if (!statSync(resolved).isFile()) throw unreadable(what, resolved, 'not a regular file', 'EISDIR');
    accessSync(resolved, constants.R_OK);
  } catch (err) {
    if (err instanceof FastmonError) throw err;
    const p = problem(err);
    throw unreadable(what, resolved, p.text, p.errno);
  }
  return resolved;
}

/** A directory we may list, e.g. `scan DIR`. */
export function requireDirectory(dir: string, what: string): string {
  const resolved = path.resolve(dir);
  try {
    if (!statSync(resolved).isDirectory()) throw unreadable(what, resolved, 'not a directory', 'ENOTDIR');
    accessSync(resolved, constants.R_OK | constants.X_OK);
  } catch (err) {
    if (err instanceof FastmonError) throw err;
    const p = problem(err);
    throw unreadable(what, resolved, p.text, p.errno);
  }
  return resolved;
}

/** A directory to write into, created when missing, e.g. `gen --out DIR`. */
export function ensureOutputDirectory(dir: string, what: string): string {
  const resolved = path.resolve(dir);
  try {
    mkdirSync(resolved, { recursive: true });
    if (!statSync(resolved).isDirectory()) throw new Error('not a directory');
    accessSync(resolved, constants.W_OK | constants.X_OK);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    const text =
      errno === 'EEXIST' || errno === undefined ? 'exists and is not a directory' : problem(err).text;
    throw new FastmonError('OUTPUT_UNWRITABLE', `${what} ${resolved}: ${text}`, { path: resolved, errno });
  }
  return resolved;
}

function unreadable(what: string, file: string, text: string, errno: string | undefined): FastmonError {
  return new FastmonError('INPUT_UNREADABLE', `${what} ${file}: ${text}${errno ? ` (${errno})` : ''}`, {
    path: file,
    errno,
  });
}
