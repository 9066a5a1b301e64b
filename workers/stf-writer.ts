// Writes binary STFs and TF sample files atomically (temporary name, then rename), in bounded memory.

import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { FastmonError } from '../src/errors.js';
import { writeAll } from '../src/sinks/durable.js';
import {
  adler32,
  type BinaryHeader,
  encodeHeader,
  encodeIndex,
  FLAG_TF_CHECKSUMS,
  headerLength,
  INDEX_ENTRY_LENGTH,
  type TfEntry,
} from './stf-format.js';

export interface StfDescription {
  runNumber: bigint;
  stfSequence: bigint;
  state: string;
  substate: string;
  startNs: bigint;
  endNs: bigint;
  /** Payload length of each TF, in file order; TF ids are 0…n-1 unless `tfIds` says otherwise. */
  tfLengths: readonly number[];
  tfIds?: readonly number[];
  /** When copying TFs out of an STF: their checksums there, verified as the bytes pass. */
  expectedTfChecksums?: readonly number[];
  source?: BinaryHeader['source'];
}

export interface Written {
  path: string;
  sizeBytes: number;
  /** adler32 of the whole file. */
  adler32: number;
}

/**
 * Fills one TF's payload. Called in file order with buffers of at most 1 MiB; `offset` is the
 * position inside that TF. Sparse writes (tests of files past 4 GB) pass `null` instead.
 */
export type PayloadSource =
  | ((tf: number, offset: number, into: Buffer) => void | Promise<void>)
  /** Fills bytes of the payload area as a whole; `position` counts from its first byte. */
  | { span: (position: number, into: Buffer) => void | Promise<void> }
  | null;

const CHUNK = 1 << 20;

/**
 * Layout: header, TF index, payloads (docs/stf-format.md). Payloads stream first, at their final
 * offsets, so each TF's checksum is known when the index is written last at the front; the
 * file's adler32 is then combined from the front's and the payloads' without reading anything back.
 * Nothing is visible under `file` until the rename, so watchers never see a partial STF.
 */
export async function writeStf(file: string, d: StfDescription, fill: PayloadSource): Promise<Written> {
  const front = headerLength(d.source) + d.tfLengths.length * INDEX_ENTRY_LENGTH;
  const payloadOffset = align8(front);
  const entries: TfEntry[] = [];
  let offset = payloadOffset;
  for (const [i, length] of d.tfLengths.entries()) {
    entries.push({ tfId: d.tfIds?.[i] ?? i, checksum: 0, offset, length });
    offset += length;
  }
  const fileLength = offset;
  const temp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  let handle: FileHandle | null = await open(temp, 'w');
  try {
    let payloadAdler = 1;
    if (fill) {
      const finished = (entry: TfEntry, index: number, value: number) => {
        const expected = d.expectedTfChecksums?.[index];
        if (expected !== undefined && expected !== value) {
          throw new FastmonError(
            'STF_CHECKSUM_MISMATCH',
            `TF ${entry.tfId}: adler32 ${value} of its bytes differs from ${expected} in the STF index`,
            { tf: entry.tfId },
          );
        }
        entry.checksum = value;
        // One pass over the bytes: the payloads' adler32 is combined from the TFs'.
        payloadAdler = adler32Combine(payloadAdler, value, entry.length);
      };
      // The payload area is one contiguous stream: it goes out in chunks of up to 1 MiB whatever
      // the TF sizes (many small TFs cost one read and one write per chunk), and each chunk is
      // cut at TF boundaries for the per-TF checksums.
      const chunk = Buffer.allocUnsafe(CHUNK);
      const payloadLength = fileLength - payloadOffset;
      let tf = 0;
      let tfDone = 0;
      let tfAdler = 1;
      const skipEmpty = () => {
        while (tf < entries.length && (entries[tf] as TfEntry).length === 0)
          finished(entries[tf] as TfEntry, tf++, 1);
      };
      skipEmpty();
      for (let position = 0; position < payloadLength; ) {
        const n = Math.min(CHUNK, payloadLength - position);
        const view = chunk.subarray(0, n);
        if (typeof fill !== 'function') await fill.span(position, view);
        for (let at = 0; at < n; ) {
          const entry = entries[tf] as TfEntry;
          const take = Math.min(entry.length - tfDone, n - at);
          const segment = view.subarray(at, at + take);
          if (typeof fill === 'function') await fill(tf, tfDone, segment);
          tfAdler = adler32(segment, tfAdler);
          tfDone += take;
          at += take;
          if (tfDone === entry.length) {
            finished(entry, tf++, tfAdler);
            tfDone = 0;
            tfAdler = 1;
            skipEmpty();
          }
        }
        await writeAll(handle, view, view.length, payloadOffset + position);
        position += n;
      }
    }
    await handle.truncate(fileLength);
    const head = Buffer.concat([
      encodeHeader({
        flags: fill ? FLAG_TF_CHECKSUMS : 0,
        runNumber: d.runNumber,
        stfSequence: d.stfSequence,
        state: d.state,
        substate: d.substate,
        startNs: d.startNs,
        endNs: d.endNs,
        tfCount: entries.length,
        indexOffset: headerLength(d.source),
        payloadOffset,
        fileLength,
        source: d.source,
      }),
      encodeIndex(entries),
      Buffer.alloc(payloadOffset - front),
    ]);
    await writeAll(handle, head, head.length, 0);
    await handle.datasync();
    await handle.close();
    handle = null;
    await rename(temp, file);
    const payloadLength = fileLength - payloadOffset;
    // A sparse file's payload is zeros; their adler32 is computed without touching the disk.
    const payloads = fill ? payloadAdler : adlerOfZeros(payloadLength);
    return {
      path: file,
      sizeBytes: fileLength,
      adler32: adler32Combine(adler32(head), payloads, payloadLength),
    };
  } catch (err) {
    await handle?.close().catch(() => {});
    await rm(temp, { force: true });
    throw err;
  }
}

/** zlib's adler32_combine: the adler32 of A‖B from adler32(A), adler32(B) and B's length. */
export function adler32Combine(adlerA: number, adlerB: number, lengthB: number): number {
  const BASE = 65521;
  const rem = lengthB % BASE;
  let sum1 = adlerA & 0xffff;
  let sum2 = (rem * sum1) % BASE;
  sum1 += (adlerB & 0xffff) + BASE - 1;
  sum2 += ((adlerA >>> 16) & 0xffff) + ((adlerB >>> 16) & 0xffff) + BASE - rem;
  if (sum1 >= BASE) sum1 -= BASE;
  if (sum1 >= BASE) sum1 -= BASE;
  if (sum2 >= BASE * 2) sum2 -= BASE * 2;
  if (sum2 >= BASE) sum2 -= BASE;
  return ((sum2 << 16) | sum1) >>> 0;
}

/** adler32 of n zero bytes: a stays 1, b grows by 1 per byte. */
function adlerOfZeros(n: number): number {
  return (((n % 65521) << 16) | 1) >>> 0;
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
