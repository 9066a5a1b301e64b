// Where an STF named by a message lives on disk, refusing anything outside the configured data roots.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorInfo, FastmonError } from '../src/errors.js';
import { type FileAccess, files } from './file-access.js';

export interface StfLocation {
  /** Absolute, symlink-free path inside a data root. */
  path: string;
  root: string;
}

/**
 * Resolves `file_url` (`file://…`) or `filename` (joined to each root in turn).
 * Returns null when the file is simply not reachable here: no roots configured, a remote URL
 * (root://, https://), or no root holds it. Throws PATH_OUTSIDE_ROOTS / PATH_INVALID when the
 * message names a path that escapes the roots: `..`, an absolute path elsewhere, a symlink
 * pointing out, or a percent-encoded variant of those.
 */
export async function locateStf(
  ref: { fileUrl: string | null; filename: string | null },
  roots: readonly string[],
  access: FileAccess = files,
): Promise<{ location: StfLocation | null; notFound?: ErrorInfo }> {
  if (roots.length === 0) return { location: null };
  const candidates = candidatePaths(ref, roots);
  if (candidates.length === 0) return { location: null };
  const realRoots = await Promise.all(roots.map((r) => access.realpath(r).catch(() => path.resolve(r))));
  for (const candidate of candidates) {
    let real: string;
    try {
      real = await access.realpath(candidate);
    } catch {
      continue; // not under this root; try the next one
    }
    const root = realRoots.find((r) => isInside(real, r));
    if (!root) {
      throw new FastmonError(
        'PATH_OUTSIDE_ROOTS',
        `STF path ${candidate} resolves to ${real}, outside the data roots`,
        {
          path: candidate,
          roots,
        },
      );
    }
    const info = await access.stat(real).catch(() => null);
    if (info?.isFile()) return { location: { path: real, root } };
    if (info)
      throw new FastmonError('PATH_INVALID', `STF path ${candidate} is not a regular file`, {
        path: candidate,
      });
  }
  return {
    location: null,
    notFound: {
      code: 'STF_NOT_FOUND',
      message: `STF not found under the data roots (looked at ${candidates.join(', ')}); sampling from message metadata`,
      details: { candidates },
    },
  };
}

/**
 * Whether locating this STF can touch the filesystem at all: false with no data roots, a remote
 * `file_url`, or no filename (locateStf then answers null without any I/O). The agent runs such
 * tasks on the main thread and starts its worker pool only for the others (src/scheduler/pool.ts).
 */
export function mayReadFile(
  ref: { fileUrl: string | null; filename: string | null },
  roots: readonly string[],
): boolean {
  if (roots.length === 0) return false;
  if (ref.fileUrl) return ref.fileUrl.startsWith('file:');
  return Boolean(ref.filename);
}

function candidatePaths(
  ref: { fileUrl: string | null; filename: string | null },
  roots: readonly string[],
): string[] {
  if (ref.fileUrl) {
    if (!ref.fileUrl.startsWith('file:')) return []; // remote (XRootD, HTTP): not read by this agent
    let file: string;
    try {
      file = fileURLToPath(ref.fileUrl);
    } catch (err) {
      throw new FastmonError(
        'PATH_INVALID',
        `file_url ${ref.fileUrl} is not a usable local file URL: ${(err as Error).message}`,
        {
          file_url: ref.fileUrl,
        },
      );
    }
    return [checked(file, roots)];
  }
  if (!ref.filename) return [];
  if (ref.filename.includes('\0')) {
    throw new FastmonError('PATH_INVALID', 'filename contains a NUL byte', { filename: ref.filename });
  }
  if (path.isAbsolute(ref.filename)) return [checked(ref.filename, roots)];
  return roots.map((root) => {
    const joined = path.resolve(root, ref.filename as string);
    if (!isInside(joined, path.resolve(root))) {
      throw new FastmonError('PATH_OUTSIDE_ROOTS', `filename ${ref.filename} escapes data root ${root}`, {
        filename: ref.filename,
        root,
      });
    }
    return joined;
  });
}

/** Lexical check of an absolute path before touching the filesystem. */
function checked(file: string, roots: readonly string[]): string {
  if (file.includes('\0')) throw new FastmonError('PATH_INVALID', 'path contains a NUL byte', { path: file });
  const resolved = path.resolve(file);
  if (!roots.some((root) => isInside(resolved, path.resolve(root)))) {
    throw new FastmonError('PATH_OUTSIDE_ROOTS', `STF path ${resolved} is outside the data roots`, {
      path: resolved,
      roots,
    });
  }
  return resolved;
}

export function isInside(file: string, root: string): boolean {
  const rel = path.relative(root, file);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
