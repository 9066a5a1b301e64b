// STF header readers, chosen by the file's first bytes: the binary EPICSTF format and the testbed's JSON text.

import { FastmonError } from '../src/errors.js';
import { type FileAccess, files } from './file-access.js';
import {
  type BinaryHeader,
  decodeHeader,
  decodeIndex,
  hasMagic,
  INDEX_ENTRY_LENGTH,
  type TfEntry,
} from './stf-format.js';

/** What a header tells about an STF. Fields a format does not carry are null. */
export interface StfHeader {
  format: string;
  sizeBytes: number;
  tfCount: number | null;
  runId: string | null;
  state: string | null;
  substate: string | null;
  sequence: number | null;
  start: string | null;
  end: string | null;
}

/** A header plus what only the worker needs: the TF index of formats that have one. */
export interface ReadStf {
  header: StfHeader;
  binary?: BinaryHeader;
  tfIndex?: TfEntry[];
}

export interface StfReader {
  format: string;
  /** True when the first bytes of a file say it is this reader's format. */
  sniff(head: Buffer): boolean;
  /** `fd` is open for reading; `head` holds its first bytes. */
  read(fd: number, sizeBytes: number, head: Buffer, path: string): Promise<ReadStf>;
}

/** Bytes read to recognise a format; also the whole header of small testbed STFs. */
export const HEAD_BYTES = 64 * 1024;
/** A JSON-text STF is metadata only (~200 bytes in the testbed); more is not a header. */
const MAX_JSON_STF_BYTES = 1024 * 1024;

/**
 * The testbed writes the STF metadata dict as the file body (daqsim) or the stf_gen message
 * (prompt processing); neither carries tf_count, so it usually comes from the default.
 */
export const jsonStfReader: StfReader = {
  format: 'json',
  sniff: (head) => firstNonSpace(head) === 0x7b, // '{'
  async read(fd, sizeBytes, head, path) {
    if (sizeBytes > MAX_JSON_STF_BYTES) {
      throw new FastmonError(
        'STF_HEADER_TOO_LARGE',
        `${path}: JSON STF of ${sizeBytes} bytes exceeds the ${MAX_JSON_STF_BYTES}-byte header limit`,
        { path, sizeBytes },
      );
    }
    const bytes =
      sizeBytes <= head.length ? head.subarray(0, sizeBytes) : await readAt(fd, 0, sizeBytes, path);
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new FastmonError(
        'STF_HEADER_CORRUPT',
        `${path}: JSON STF header does not parse: ${(err as Error).message}`,
        {
          path,
        },
      );
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new FastmonError('STF_HEADER_CORRUPT', `${path}: JSON STF header is not an object`, { path });
    }
    const m = doc as Record<string, unknown>;
    const tfCount =
      typeof m.tf_count === 'number' && Number.isInteger(m.tf_count) && m.tf_count > 0 ? m.tf_count : null;
    const header: StfHeader = {
      format: 'json',
      sizeBytes,
      tfCount,
      runId: typeof m.run_id === 'string' || typeof m.run_id === 'number' ? String(m.run_id) : null,
      state: str(m.state),
      substate: str(m.substate),
      sequence: typeof m.sequence === 'number' ? m.sequence : null,
      start: str(m.start),
      end: str(m.end),
    };
    return { header };
  },
};

/**
 * The binary layout of docs/stf-format.md. Only the header and the TF index are read here (the
 * index usually sits inside the first 64 KiB already read); payloads are read later, and only
 * the sampled TFs' byte ranges.
 */
export const binaryStfReader: StfReader = {
  format: 'epicstf',
  sniff: hasMagic,
  async read(fd, sizeBytes, head, path) {
    const binary = decodeHeader(head, sizeBytes, path);
    const indexLength = binary.tfCount * INDEX_ENTRY_LENGTH;
    const index =
      binary.indexOffset + indexLength <= head.length
        ? head.subarray(binary.indexOffset, binary.indexOffset + indexLength)
        : await readAt(fd, binary.indexOffset, indexLength, path);
    const tfIndex = decodeIndex(index, binary, path);
    const header: StfHeader = {
      format: 'epicstf',
      sizeBytes,
      tfCount: binary.tfCount,
      runId: String(binary.runNumber),
      state: binary.state || null,
      substate: binary.substate || null,
      sequence: Number(binary.stfSequence),
      start: binary.startNs ? new Date(Number(binary.startNs / 1_000_000n)).toISOString() : null,
      end: binary.endNs ? new Date(Number(binary.endNs / 1_000_000n)).toISOString() : null,
    };
    return { header, binary, tfIndex };
  },
};

const readers: StfReader[] = [binaryStfReader, jsonStfReader];

/** Adds a format ahead of the built-in ones (the binary STF format plugs in here). */
export function registerReader(reader: StfReader): void {
  readers.unshift(reader);
}

/** Reads an STF's header (and index) without reading more of the file than the format needs. */
export async function readStf(path: string, access: FileAccess = files): Promise<ReadStf> {
  let fd: number;
  try {
    fd = await access.open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FastmonError(
      code === 'ENOENT' ? 'STF_NOT_FOUND' : 'STF_UNREADABLE',
      `${path}: cannot open: ${(err as Error).message}`,
      { path, errno: code },
    );
  }
  try {
    const size = await access.size(fd);
    if (size === 0) throw new FastmonError('STF_EMPTY', `${path}: STF file is empty (0 bytes)`, { path });
    // Only the bytes read are looked at, so the buffer need not be zeroed first.
    const head = Buffer.allocUnsafe(Math.min(size, HEAD_BYTES));
    const bytesRead = await access.read(fd, head, 0, head.length, 0);
    const first = head.subarray(0, bytesRead);
    const reader = readers.find((r) => r.sniff(first));
    if (!reader) {
      throw new FastmonError(
        'STF_BAD_MAGIC',
        `${path}: not a known STF format (neither EPICSTF binary nor JSON text) (offset 0)`,
        {
          path,
          offset: 0,
        },
      );
    }
    return await reader.read(fd, size, first, path);
  } catch (err) {
    if (err instanceof FastmonError) throw err;
    throw new FastmonError('STF_UNREADABLE', `${path}: read failed: ${(err as Error).message}`, { path });
  } finally {
    await access.close(fd);
  }
}

/** Reads exactly `length` bytes at `position` into `into` (or a new buffer). */
export async function readAt(
  fd: number,
  position: number,
  length: number,
  path: string,
  into?: Buffer,
): Promise<Buffer> {
  const buffer = into ?? Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const bytesRead = await files.read(fd, buffer, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new FastmonError(
        'STF_TRUNCATED',
        `${path}: file ends ${length - done} bytes short (offset ${position + done})`,
        {
          path,
          offset: position + done,
        },
      );
    }
    done += bytesRead;
  }
  return buffer;
}

/** Header only, for callers that do not need the TF index (bench, tools). */
export async function readStfHeader(path: string): Promise<StfHeader> {
  return (await readStf(path)).header;
}

function firstNonSpace(head: Buffer): number | undefined {
  for (const byte of head) {
    if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) return byte;
  }
  return undefined;
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}
