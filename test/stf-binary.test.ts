import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FastmonError } from '../src/errors.js';
import { files } from '../workers/file-access.js';
import { adler32, adlerString, BASE_HEADER_LENGTH, INDEX_ENTRY_LENGTH } from '../workers/stf-format.js';
import { readStf } from '../workers/stf-reader.js';
import runStfTask, { type StfTask } from '../workers/stf-task.js';
import { adler32Combine, type StfDescription, writeStf } from '../workers/stf-writer.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-binary-'));
  made.push(d);
  return d;
}

/** Payload bytes that depend on TF and position, so misplaced reads show. */
function pattern(tf: number, offset: number, into: Buffer): void {
  for (let i = 0; i < into.length; i++) into[i] = (tf * 31 + offset + i) & 0xff;
}

function description(tfLengths: number[], extra: Partial<StfDescription> = {}): StfDescription {
  return {
    runNumber: 101993n,
    stfSequence: 7n,
    state: 'run',
    substate: 'physics',
    startNs: 1_763_900_000_000_000_000n,
    endNs: 1_763_900_000_600_000_000n,
    tfLengths,
    ...extra,
  };
}

function task(file: string, overrides: Partial<StfTask> = {}): StfTask {
  return {
    seed: 's',
    runId: '101993',
    stfFilename: path.basename(file),
    fileUrl: null,
    filename: path.basename(file),
    messageSizeBytes: null,
    messageTfCount: null,
    messageChecksum: null,
    dataRoots: [path.dirname(file)],
    tfCountDefault: 1000,
    settings: { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 },
    outputDir: null,
    stfChecksum: false,
    ...overrides,
  };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<FastmonError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(FastmonError);
  expect((err as FastmonError).code).toBe(code);
  return err as FastmonError;
}

describe('binary STF format', () => {
  it('reads back what the writer wrote: header, TF index and per-TF checksums', async () => {
    const d = dir();
    const lengths = [100, 0, 4096, 70_000, 3];
    const file = path.join(d, 'swf.101993.000007.stf');
    const written = await writeStf(file, description(lengths), pattern);
    const bytes = readFileSync(file);
    expect(written.sizeBytes).toBe(bytes.length);
    expect(written.adler32).toBe(adler32(bytes));
    const read = await readStf(file);
    expect(read.header).toMatchObject({
      format: 'epicstf',
      tfCount: 5,
      runId: '101993',
      sequence: 7,
      state: 'run',
      substate: 'physics',
    });
    expect(read.header.start).toBe(new Date(1_763_900_000_000).toISOString());
    expect(read.tfIndex?.map((t) => t.length)).toEqual(lengths);
    for (const [i, tf] of (read.tfIndex ?? []).entries()) {
      const payload = bytes.subarray(tf.offset, tf.offset + tf.length);
      const expected = Buffer.alloc(tf.length);
      pattern(i, 0, expected);
      expect(payload.equals(expected)).toBe(true);
      expect(tf.checksum).toBe(adler32(payload));
    }
    expect(readdirSync(d)).toEqual(['swf.101993.000007.stf']); // no temporary file left
  });

  it('combines adler32 values as zlib does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
        const joined = Buffer.concat([a, b]);
        expect(adler32Combine(adler32(a), adler32(b), b.length)).toBe(adler32(joined));
      }),
    );
    expect(adler32(Buffer.from('Wikipedia'))).toBe(0x11e60398); // the usual test vector
  });

  it('computes adler32 as the byte-at-a-time definition does, across block boundaries and offsets', () => {
    const reference = (data: Uint8Array, previous = 1) => {
      let a = previous & 0xffff;
      let b = previous >>> 16;
      for (const byte of data) {
        a = (a + byte) % 65521;
        b = (b + a) % 65521;
      }
      return ((b << 16) | a) >>> 0;
    };
    const validAdler = fc
      .tuple(fc.integer({ min: 0, max: 65520 }), fc.integer({ min: 0, max: 65520 }))
      .map(([a, b]) => ((b << 16) | a) >>> 0);
    fc.assert(
      fc.property(
        // Lengths around and past NMAX (5552), where the deferred modulo happens.
        fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 5500, maxLength: 12_000 })),
        fc.nat(7),
        validAdler,
        (bytes, skip, previous) => {
          // A view at an odd offset into a larger buffer, as a TF segment of a read chunk is.
          const view = bytes.subarray(Math.min(skip, bytes.length));
          expect(adler32(view, previous)).toBe(reference(view, previous));
          expect(adler32(view)).toBe(reference(view));
        },
      ),
      // Shrinking arrays of thousands of bytes takes minutes: report the first failure as found.
      { numRuns: 100, endOnFailure: true },
    );
    // The largest sums: all bytes 255 from the largest valid start, over several blocks.
    const worst = new Uint8Array(5552 * 3 + 17).fill(255);
    const top = ((65520 << 16) | 65520) >>> 0;
    expect(adler32(worst, top)).toBe(reference(worst, top));
    expect(adler32(new Uint8Array(0))).toBe(1);
    expect(adler32(new Uint8Array(0), top)).toBe(top);
  });

  it('handles offsets past 4 GB in a sparse STF of 1000 TFs', async () => {
    const d = dir();
    const file = path.join(d, 'swf.101993.000001.stf');
    const lengths = Array.from({ length: 1000 }, () => 6_000_000); // 6 GB of payload
    const written = await writeStf(file, description(lengths), null);
    expect(written.sizeBytes).toBeGreaterThan(2 ** 32);
    const read = await readStf(file);
    expect(read.header.tfCount).toBe(1000);
    const last = read.tfIndex?.at(-1);
    expect(last?.offset).toBeGreaterThan(2 ** 32);
    expect((last?.offset ?? 0) + (last?.length ?? 0)).toBe(statSync(file).size);
    // One TF per sample keeps the extraction small; the last one lies beyond the 4 GB mark.
    const settings = { tfFilesPerStf: 7, tfSizeFraction: 0.007, tfSequenceStart: 1 };
    const result = await runStfTask(task(file, { outputDir: path.join(d, 'out'), settings }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const lastSample = result.samples.at(-1);
    expect((lastSample?.tfFirst ?? 0) * 6_000_000).toBeGreaterThan(2 ** 32);
    const sampleFile = await readStf(lastSample?.file as string);
    expect(sampleFile.header.tfCount).toBe(lastSample?.tfCount);
  });

  it('gives a typed error naming file and offset for every kind of damage', async () => {
    const d = dir();
    const good = path.join(d, 'good.stf');
    await writeStf(good, description([1000, 1000, 1000]), pattern);
    const bytes = readFileSync(good);
    const variant = (name: string, mutate: (b: Buffer) => Buffer | undefined) => {
      const file = path.join(d, name);
      const copy = Buffer.from(bytes);
      writeFileSync(file, mutate(copy) ?? copy);
      return file;
    };
    await expectCode(readStf(variant('empty.stf', () => Buffer.alloc(0))), 'STF_EMPTY');
    const truncated = await expectCode(
      readStf(variant('truncated.stf', (b) => b.subarray(0, b.length - 10))),
      'STF_TRUNCATED',
    );
    expect(truncated.message).toMatch(
      /truncated\.stf: header says \d+ bytes, the file has \d+ \(offset 104\)/,
    );
    await expectCode(readStf(variant('short-header.stf', (b) => b.subarray(0, 60))), 'STF_TRUNCATED');
    await expectCode(
      readStf(
        variant('magic.stf', (b) => {
          b[3] = 0x58;
          return undefined;
        }),
      ),
      'STF_BAD_MAGIC',
    );
    const version = await expectCode(
      readStf(
        variant('version.stf', (b) => {
          b.writeUInt16LE(2, 8);
          return undefined;
        }),
      ),
      'STF_UNSUPPORTED_VERSION',
    );
    expect(version.details).toMatchObject({ offset: 8 });
    await expectCode(
      readStf(
        variant('header.stf', (b) => {
          b.writeUInt8(b.readUInt8(40) ^ 0xff, 40);
          return undefined;
        }),
      ),
      'STF_HEADER_CORRUPT',
    );
    // Index entries: TF 1 pointing past the end, TF 2 overlapping TF 1.
    const entry = (i: number) => BASE_HEADER_LENGTH + i * INDEX_ENTRY_LENGTH;
    const oob = await expectCode(
      readStf(
        variant('oob.stf', (b) => {
          b.writeBigUInt64LE(BigInt(b.length), entry(1) + 8);
          return undefined;
        }),
      ),
      'STF_INDEX_OUT_OF_BOUNDS',
    );
    expect(oob.details).toMatchObject({ offset: entry(1), tf: 1 });
    // An offset beyond 2^53 is printed exactly as stored, not as the nearest double.
    const huge = 2n ** 60n + 3n;
    const far = await expectCode(
      readStf(
        variant('far.stf', (b) => {
          b.writeBigUInt64LE(huge, entry(1) + 8);
          return undefined;
        }),
      ),
      'STF_INDEX_OUT_OF_BOUNDS',
    );
    const length = BigInt(far.details?.tfEnd as string) - huge;
    expect(far.message).toContain(`TF 1 at [${huge}, ${huge + length})`);
    expect(far.details).toMatchObject({ tfStart: '1152921504606846979' });
    await expectCode(
      readStf(
        variant('overlap.stf', (b) => {
          b.writeBigUInt64LE(b.readBigUInt64LE(entry(1) + 8) + 10n, entry(2) + 8);
          return undefined;
        }),
      ),
      'STF_TF_OVERLAP',
    );
  });

  it('never crashes on random or corrupted bytes: a typed error or a valid result', async () => {
    const d = dir();
    const good = path.join(d, 'good.stf');
    await writeStf(good, description([10, 20, 30, 40]), pattern);
    const bytes = readFileSync(good);
    const file = path.join(d, 'fuzz.stf');
    const codes = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
          fc
            .array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), {
              minLength: 1,
              maxLength: 8,
            })
            .map((edits) => {
              const b = Buffer.from(bytes);
              for (const [at, value] of edits) b[at] = value;
              return b;
            }),
          fc.nat(bytes.length).map((n) => bytes.subarray(0, n)),
        ),
        async (content) => {
          writeFileSync(file, content);
          const result = await runStfTask(task(file, { outputDir: path.join(d, 'out') }));
          if (result.ok) {
            expect(result.samples.length).toBeGreaterThan(0);
          } else {
            expect(result.error.code).not.toBe('WORKER_FAILED');
            expect(result.error.message).toContain('fuzz.stf');
            codes.add(result.error.code);
          }
        },
      ),
      { numRuns: 400 },
    );
    expect(codes.size).toBeGreaterThan(3);
  });
});

describe('TF extraction', () => {
  it('writes each sample as a file of its TFs whose size and checksum match its bytes', async () => {
    const d = dir();
    const stf = path.join(d, 'swf.101993.000003.stf');
    await writeStf(stf, description(Array.from({ length: 100 }, (_, i) => 500 + i)), pattern);
    const out = path.join(d, 'out');
    const result = await runStfTask(task(stf, { outputDir: out }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.samples).toHaveLength(7);
    const stfBytes = readFileSync(stf);
    const stfIndex = (await readStf(stf)).tfIndex ?? [];
    for (const s of result.samples) {
      expect(s.file).toBe(path.join(out, '101993', s.tfFilename));
      const bytes = readFileSync(s.file as string);
      expect(s.fileSizeBytes).toBe(bytes.length);
      expect(s.checksum).toBe(adlerString(adler32(bytes)));
      const sample = await readStf(s.file as string);
      expect(sample.binary?.source).toEqual({ stfFilename: 'swf.101993.000003.stf', tfFirst: s.tfFirst });
      expect(sample.tfIndex?.map((t) => t.tfId)).toEqual(range(s.tfFirst, s.tfLast));
      for (const [k, tf] of (sample.tfIndex ?? []).entries()) {
        const original = stfIndex[s.tfFirst + k];
        expect(
          bytes
            .subarray(tf.offset, tf.offset + tf.length)
            .equals(stfBytes.subarray(original?.offset, (original?.offset ?? 0) + (original?.length ?? 0))),
        ).toBe(true);
      }
    }
  });

  it('copies the right bytes when the STF leaves gaps between TFs', async () => {
    const d = dir();
    const stf = path.join(d, 'swf.101993.000008.stf');
    await writeStf(stf, description(Array.from({ length: 20 }, () => 100)), pattern);
    // Rewrite the index so TF i sits at payload + 150 i (gaps of 50 bytes), payloads moved to match.
    const bytes = readFileSync(stf);
    const read = await readStf(stf);
    const payload = read.binary?.payloadOffset ?? 0;
    const spread = Buffer.alloc(payload + 20 * 150);
    bytes.copy(spread, 0, 0, payload);
    for (let i = 0; i < 20; i++) {
      bytes.copy(spread, payload + i * 150, payload + i * 100, payload + i * 100 + 100);
      spread.writeBigUInt64LE(BigInt(payload + i * 150), BASE_HEADER_LENGTH + i * INDEX_ENTRY_LENGTH + 8);
    }
    spread.writeBigUInt64LE(BigInt(spread.length), 104);
    spread.writeUInt32LE(adler32(spread.subarray(0, 112)), 112);
    writeFileSync(stf, spread);
    const result = await runStfTask(task(stf, { outputDir: path.join(d, 'out') }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    for (const s of result.samples) {
      const sample = await readStf(s.file as string);
      const sampleBytes = readFileSync(s.file as string);
      for (const tf of sample.tfIndex ?? []) {
        const expected = Buffer.alloc(100);
        pattern(tf.tfId, 0, expected);
        expect(sampleBytes.subarray(tf.offset, tf.offset + tf.length).equals(expected)).toBe(true);
      }
    }
  });

  it('reads only the sampled byte ranges, not the whole STF', async () => {
    const d = dir();
    const stf = path.join(d, 'swf.101993.000004.stf');
    await writeStf(stf, description(Array.from({ length: 1000 }, () => 10_000)), pattern);
    const reads: number[] = [];
    const read = files.read;
    files.read = (fd, into, offset, length, position) => {
      reads.push(length);
      return read(fd, into, offset, length, position);
    };
    try {
      const result = await runStfTask(task(stf, { outputDir: path.join(d, 'out') }));
      expect(result.ok).toBe(true);
      const sampledBytes = result.ok ? result.samples.reduce((sum, s) => sum + s.tfCount * 10_000, 0) : 0;
      const total = reads.reduce((a, b) => a + b, 0);
      // Header and index (64 KiB head) plus the sampled TFs; the STF is ~10 MB.
      expect(total).toBeLessThanOrEqual(sampledBytes + 64 * 1024);
      expect(total).toBeLessThan(statSync(stf).size / 4);
    } finally {
      files.read = read;
    }
  });

  it('refuses a sample whose TF bytes do not match the STF index checksum', async () => {
    const d = dir();
    const stf = path.join(d, 'swf.101993.000005.stf');
    await writeStf(stf, description(Array.from({ length: 10 }, () => 1000)), pattern);
    const bytes = readFileSync(stf);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1); // a flip in the last TF's payload
    writeFileSync(stf, bytes);
    const result = await runStfTask(task(stf, { outputDir: path.join(d, 'out') }));
    expect(result).toMatchObject({ ok: false, error: { code: 'STF_CHECKSUM_MISMATCH' } });
    if (!result.ok)
      expect(result.error.message).toMatch(
        /swf\.101993\.000005\.stf: extracting swf\.101993\.000005_tf_007\.tf/,
      );
    // The six good samples were staged, not committed: no sample file and no temporary is left.
    expect(readdirSync(path.join(d, 'out', '101993'))).toEqual([]);
  });

  it('computes the STF adler32 when asked and the message has none', async () => {
    const d = dir();
    const stf = path.join(d, 'swf.101993.000006.stf');
    const written = await writeStf(stf, description([3000, 3000]), pattern);
    const computed = await runStfTask(task(stf, { stfChecksum: true }));
    expect(computed).toMatchObject({ ok: true, stfChecksum: adlerString(written.adler32) });
    const fromMessage = await runStfTask(task(stf, { stfChecksum: true, messageChecksum: 'ad:1' }));
    expect(fromMessage).toMatchObject({ ok: true, stfChecksum: 'ad:1' });
    truncateSync(stf, 0);
  });
});

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
