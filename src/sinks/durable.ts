// Small durable-write primitives shared by the catalog's siblings: the ledger, the outbox and the STF writer.

import { type FileHandle, open } from 'node:fs/promises';
import type { Logger } from '../log/logger.js';

/**
 * Writes all of `buf[0, length)`: a single write may be short. `position` null appends at the
 * file's current offset; a number writes there (the STF writer fills payloads in place).
 */
export async function writeAll(
  handle: FileHandle,
  buf: Buffer,
  length = buf.length,
  position: number | null = null,
): Promise<void> {
  for (let at = 0; at < length; ) {
    const { bytesWritten } = await handle.write(
      buf,
      at,
      length - at,
      position === null ? null : position + at,
    );
    at += bytesWritten;
  }
}

/** Makes a rename durable: the directory entry itself must reach the disk, not only the file. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * What an append-only file's loader found that an operator should hear about: a last line cut
 * short by a crash (cut off on open) and unreadable lines (skipped).
 */
export function reportLoad(
  logger: Logger,
  kind: 'ledger' | 'outbox',
  file: string,
  scan: { torn: number; corrupt: readonly number[] },
  loaded: object,
): void {
  if (scan.torn > 0) {
    logger.warn(
      { [kind]: file, bytes: scan.torn },
      `${kind} ends in an unfinished line (its writer stopped mid-write); cut it off`,
    );
  }
  if (scan.corrupt.length > 0) {
    logger.warn(
      { [kind]: file, count: scan.corrupt.length, lines: scan.corrupt.slice(0, 10) },
      `skipped unreadable ${kind} lines`,
    );
  }
  logger.debug({ [kind]: file, ...loaded }, `${kind} loaded`);
}
