// The binary STF layout of docs/stf-format.md: header and TF index encoding, decoding and validation.

import { FastmonError } from '../src/errors.js';

/** "EPICSTF" and a NUL: the first 8 bytes of every binary STF and TF sample file. */
export const MAGIC = Buffer.from('EPICSTF\0', 'latin1');
export const VERSION = 1;
export const BASE_HEADER_LENGTH = 128;
export const INDEX_ENTRY_LENGTH = 24;
/** TF index entries carry an adler32 of each payload. */
export const FLAG_TF_CHECKSUMS = 1;
/** The file is a TF sample cut from an STF; the header extension says which. */
export const FLAG_SAMPLE = 2;
const KNOWN_FLAGS = FLAG_TF_CHECKSUMS | FLAG_SAMPLE;
const TEXT_FIELD = 16;
const HEADER_CHECKSUM_AT = 112;

export interface BinaryHeader {
  version: number;
  headerLength: number;
  flags: number;
  runNumber: bigint;
  stfSequence: bigint;
  state: string;
  substate: string;
  /** Nanoseconds since the Unix epoch. */
  startNs: bigint;
  endNs: bigint;
  tfCount: number;
  indexOffset: number;
  payloadOffset: number;
  fileLength: number;
  /** Present in TF sample files (FLAG_SAMPLE). */
  source?: { stfFilename: string; tfFirst: number };
}

export interface TfEntry {
  tfId: number;
  checksum: number;
  offset: number;
  length: number;
}

export function hasMagic(head: Buffer): boolean {
  return head.length >= MAGIC.length && head.subarray(0, MAGIC.length).equals(MAGIC);
}

/** Bytes of the header including its extension (a sample's provenance). */
export function headerLength(source?: BinaryHeader['source']): number {
  if (!source) return BASE_HEADER_LENGTH;
  const name = Buffer.byteLength(source.stfFilename, 'utf8');
  return BASE_HEADER_LENGTH + align8(4 + 2 + name);
}

export function encodeHeader(h: Omit<BinaryHeader, 'version' | 'headerLength'>): Buffer {
  const length = headerLength(h.source);
  const b = Buffer.alloc(length);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(VERSION, 8);
  b.writeUInt16LE(length, 10);
  b.writeUInt32LE(h.flags | (h.source ? FLAG_SAMPLE : 0), 12);
  b.writeBigUInt64LE(h.runNumber, 16);
  b.writeBigUInt64LE(h.stfSequence, 24);
  writeText(b, 32, h.state);
  writeText(b, 48, h.substate);
  b.writeBigUInt64LE(h.startNs, 64);
  b.writeBigUInt64LE(h.endNs, 72);
  b.writeUInt32LE(h.tfCount, 80);
  b.writeUInt32LE(INDEX_ENTRY_LENGTH, 84);
  b.writeBigUInt64LE(BigInt(h.indexOffset), 88);
  b.writeBigUInt64LE(BigInt(h.payloadOffset), 96);
  b.writeBigUInt64LE(BigInt(h.fileLength), 104);
  b.writeUInt32LE(adler32(b.subarray(0, HEADER_CHECKSUM_AT)), HEADER_CHECKSUM_AT);
  if (h.source) {
    const name = Buffer.from(h.source.stfFilename, 'utf8');
    b.writeUInt32LE(h.source.tfFirst, BASE_HEADER_LENGTH);
    b.writeUInt16LE(name.length, BASE_HEADER_LENGTH + 4);
    name.copy(b, BASE_HEADER_LENGTH + 6);
  }
  return b;
}

/**
 * Decodes and checks a header. `head` holds at least the first bytes of the file (the whole
 * header when it is complete); `fileSize` is what stat says. Every failure names the file and
 * the offset of the offending field.
 */
export function decodeHeader(head: Buffer, fileSize: number, path: string): BinaryHeader {
  const fail = (
    code: 'STF_TRUNCATED' | 'STF_HEADER_CORRUPT' | 'STF_UNSUPPORTED_VERSION' | 'STF_BAD_MAGIC',
    offset: number,
    what: string,
  ) => new FastmonError(code, `${path}: ${what} (offset ${offset})`, { path, offset });
  if (!hasMagic(head)) throw fail('STF_BAD_MAGIC', 0, 'not an STF: wrong magic');
  if (head.length < 12)
    throw fail('STF_TRUNCATED', head.length, `file ends inside the header (${fileSize} bytes)`);
  const version = head.readUInt16LE(8);
  if (version !== VERSION)
    throw fail(
      'STF_UNSUPPORTED_VERSION',
      8,
      `unsupported STF version ${version} (this reader knows ${VERSION})`,
    );
  const length = head.readUInt16LE(10);
  if (length < BASE_HEADER_LENGTH)
    throw fail('STF_HEADER_CORRUPT', 10, `header length ${length} < ${BASE_HEADER_LENGTH}`);
  if (head.length < length || fileSize < length) {
    throw fail(
      'STF_TRUNCATED',
      Math.min(head.length, fileSize),
      `file ends inside the ${length}-byte header (${fileSize} bytes)`,
    );
  }
  const stored = head.readUInt32LE(HEADER_CHECKSUM_AT);
  if (stored !== adler32(head.subarray(0, HEADER_CHECKSUM_AT))) {
    throw fail('STF_HEADER_CORRUPT', HEADER_CHECKSUM_AT, 'header checksum mismatch');
  }
  const flags = head.readUInt32LE(12);
  if ((flags & ~KNOWN_FLAGS) !== 0)
    throw fail('STF_HEADER_CORRUPT', 12, `unknown flags 0x${flags.toString(16)}`);
  const entrySize = head.readUInt32LE(84);
  if (entrySize !== INDEX_ENTRY_LENGTH)
    throw fail('STF_HEADER_CORRUPT', 84, `index entry size ${entrySize} != ${INDEX_ENTRY_LENGTH}`);
  const header: BinaryHeader = {
    version,
    headerLength: length,
    flags,
    runNumber: head.readBigUInt64LE(16),
    stfSequence: head.readBigUInt64LE(24),
    state: readText(head, 32),
    substate: readText(head, 48),
    startNs: head.readBigUInt64LE(64),
    endNs: head.readBigUInt64LE(72),
    tfCount: head.readUInt32LE(80),
    indexOffset: safeNumber(head.readBigUInt64LE(88), () =>
      fail('STF_HEADER_CORRUPT', 88, 'index offset beyond 2^53'),
    ),
    payloadOffset: safeNumber(head.readBigUInt64LE(96), () =>
      fail('STF_HEADER_CORRUPT', 96, 'payload offset beyond 2^53'),
    ),
    fileLength: safeNumber(head.readBigUInt64LE(104), () =>
      fail('STF_HEADER_CORRUPT', 104, 'file length beyond 2^53'),
    ),
  };
  if (flags & FLAG_SAMPLE) {
    const at = BASE_HEADER_LENGTH;
    const nameLength = length >= at + 6 ? head.readUInt16LE(at + 4) : -1;
    if (nameLength < 0 || at + 6 + nameLength > length)
      throw fail('STF_HEADER_CORRUPT', at, 'sample provenance does not fit the header');
    header.source = {
      tfFirst: head.readUInt32LE(at),
      stfFilename: head.toString('utf8', at + 6, at + 6 + nameLength),
    };
  }
  if (header.fileLength !== fileSize) {
    const code = fileSize < header.fileLength ? 'STF_TRUNCATED' : 'STF_HEADER_CORRUPT';
    throw fail(code, 104, `header says ${header.fileLength} bytes, the file has ${fileSize}`);
  }
  const indexEnd = header.indexOffset + header.tfCount * INDEX_ENTRY_LENGTH;
  if (
    header.indexOffset < length ||
    indexEnd > header.payloadOffset ||
    header.payloadOffset > header.fileLength
  ) {
    throw new FastmonError(
      'STF_INDEX_OUT_OF_BOUNDS',
      `${path}: TF index [${header.indexOffset}, ${indexEnd}) and payloads from ${header.payloadOffset} do not fit a ${header.fileLength}-byte file (offset 88)`,
      { path, offset: 88 },
    );
  }
  return header;
}

export function encodeIndex(entries: readonly TfEntry[]): Buffer {
  const b = Buffer.alloc(entries.length * INDEX_ENTRY_LENGTH);
  entries.forEach((e, i) => {
    const at = i * INDEX_ENTRY_LENGTH;
    b.writeUInt32LE(e.tfId, at);
    b.writeUInt32LE(e.checksum, at + 4);
    b.writeBigUInt64LE(BigInt(e.offset), at + 8);
    b.writeBigUInt64LE(BigInt(e.length), at + 16);
  });
  return b;
}

/**
 * Decodes the index and checks that every TF lies inside the payload area, in file order, with
 * no two overlapping: the reader then reads a TF range as one contiguous span.
 */
export function decodeIndex(index: Buffer, header: BinaryHeader, path: string): TfEntry[] {
  // DataView reads compile to single loads; Buffer's readUInt32LE costs five times more here,
  // and readBigUInt64LE allocates: this loop runs a thousand times for every STF read.
  const view = new DataView(index.buffer, index.byteOffset, index.length);
  const entries: TfEntry[] = new Array(header.tfCount);
  let previousEnd = header.payloadOffset;
  for (let i = 0; i < header.tfCount; i++) {
    const at = i * INDEX_ENTRY_LENGTH;
    const fileOffset = header.indexOffset + at;
    const offset = readUint64(view, at + 8);
    const length = readUint64(view, at + 16);
    if (
      offset < header.payloadOffset ||
      offset + length > header.fileLength ||
      !Number.isSafeInteger(offset + length)
    ) {
      // The fast reads above are doubles, exact only below 2^53: the message re-reads the entry
      // as 64-bit integers so that a corrupt offset is shown as the bytes say, not rounded.
      const start = view.getBigUint64(at + 8, true);
      const end = start + view.getBigUint64(at + 16, true);
      throw new FastmonError(
        'STF_INDEX_OUT_OF_BOUNDS',
        `${path}: TF ${i} at [${start}, ${end}) is outside the payload area [${header.payloadOffset}, ${header.fileLength}) (index entry at offset ${fileOffset})`,
        { path, offset: fileOffset, tf: i, tfStart: start.toString(), tfEnd: end.toString() },
      );
    }
    if (offset < previousEnd) {
      throw new FastmonError(
        'STF_TF_OVERLAP',
        `${path}: TF ${i} starts at ${offset}, before the previous TF ends at ${previousEnd} (index entry at offset ${fileOffset})`,
        { path, offset: fileOffset, tf: i },
      );
    }
    previousEnd = offset + length;
    entries[i] = { tfId: view.getUint32(at, true), checksum: view.getUint32(at + 4, true), offset, length };
  }
  return entries;
}

const ADLER_BASE = 65521;
/**
 * zlib's NMAX: the most bytes after which the sums, starting below ADLER_BASE, still fit in 32
 * bits unsigned, so the modulo is taken once per block instead of once per byte.
 */
const ADLER_NMAX = 5552;

/**
 * adler32 (RFC 1950), continuing from `previous` for streaming use. As zlib does it: blocks of
 * NMAX bytes with the modulo deferred to the end of each block, and the inner loop unrolled by
 * 16. The sums are kept as int32 (`| 0`, which V8 compiles to plain machine adds) and read back
 * as uint32 (`>>> 0`) before the modulo: within a block they stay below 2^32, so nothing is lost.
 * About twice the speed of the one-byte loop on V8 (1.2 to 1.5 GB/s against 0.6 to 0.7).
 */
export function adler32(data: Uint8Array, previous = 1): number {
  let a = previous & 0xffff;
  let b = (previous >>> 16) & 0xffff;
  const n = data.length;
  let i = 0;
  while (i < n) {
    const end = Math.min(i + ADLER_NMAX, n);
    for (const end16 = end - 15; i < end16; i += 16) {
      a = (a + (data[i] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 1] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 2] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 3] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 4] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 5] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 6] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 7] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 8] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 9] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 10] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 11] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 12] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 13] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 14] as number)) | 0;
      b = (b + a) | 0;
      a = (a + (data[i + 15] as number)) | 0;
      b = (b + a) | 0;
    }
    for (; i < end; i++) {
      a = (a + (data[i] as number)) | 0;
      b = (b + a) | 0;
    }
    a = (a >>> 0) % ADLER_BASE;
    b = (b >>> 0) % ADLER_BASE;
  }
  return ((b << 16) | a) >>> 0;
}

/** The testbed's checksum notation (daqsim): `ad:` and the decimal adler32. */
export function adlerString(value: number): string {
  return `ad:${value >>> 0}`;
}

function writeText(b: Buffer, at: number, text: string): void {
  const bytes = Buffer.from(text, 'latin1').subarray(0, TEXT_FIELD);
  bytes.copy(b, at);
}

function readText(b: Buffer, at: number): string {
  const field = b.subarray(at, at + TEXT_FIELD);
  const end = field.indexOf(0);
  return field.toString('latin1', 0, end === -1 ? TEXT_FIELD : end);
}

/**
 * A 64-bit little-endian integer as a Number, from two 32-bit reads: exact below 2^53, and above
 * it at least 2^53, which the callers' safe-integer checks refuse. No BigInt is allocated.
 */
function readUint64(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 0x1_0000_0000;
}

function safeNumber(value: bigint, error: () => FastmonError): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw error();
  return Number(value);
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
