// Small durable-write primitives shared by the catalog's siblings: the ledger, the outbox and the STF writer.

import { type FileHandle, open } from 'node:fs/promises';

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
