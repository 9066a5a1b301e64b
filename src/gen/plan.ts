// The synthetic run `gen` writes, as a pure function of its options: STF names, TF lengths, times, payload bytes.

import { createHash } from 'node:crypto';
import { seededUint32 } from '../../workers/random.js';
import type { StfDescription } from '../../workers/stf-writer.js';

export interface PlanOptions {
  run: number;
  count: number;
  tfsPerStf: number;
  /** Mean TF payload length in bytes (the mean of the log-normal, not its median). */
  tfSizeMean: number;
  /** Sigma of the underlying normal; 0 gives every TF exactly the mean. */
  tfSizeSigma: number;
  seed: string;
  startSequence: number;
  state: string;
  substate: string;
  /** Each STF covers this much time, back to back from `startTimeMs`. */
  stfIntervalMs: number;
  /** Start of the first STF, epoch ms. Fixed by default, so a seed gives the same bytes every time. */
  startTimeMs: number;
}

/**
 * 1000 TFs of 16 KiB make a ~16 MB STF: big enough that reading, sampling and checksumming cost
 * something, small enough for a laptop demo. The testbed's real STFs are ~1000 TFs and ~2 GB
 * (docs/testbed-interface.md, "STFs and TFs"); `--tf-size 2000000` gives that. 600 ms is the STF duration given there.
 */
export const PLAN_DEFAULTS: Omit<PlanOptions, 'run'> = {
  count: 10,
  tfsPerStf: 1000,
  tfSizeMean: 16384,
  tfSizeSigma: 0.25,
  seed: 'swf-fastmon',
  startSequence: 1,
  state: 'run',
  substate: 'physics',
  stfIntervalMs: 600,
  startTimeMs: Date.UTC(2026, 0, 1),
};

export interface PlannedStf {
  /** 0-based position in the run. */
  index: number;
  sequence: number;
  filename: string;
  tfLengths: number[];
  payloadBytes: number;
  startNs: bigint;
  endNs: bigint;
}

/** `swf.<run>.<seq:06d>.stf`, the testbed workflows' name (docs/testbed-interface.md, "STFs and TFs"). */
export function stfFilename(run: number, sequence: number): string {
  return `swf.${run}.${String(sequence).padStart(6, '0')}.stf`;
}

/**
 * The STF at `index`. It depends on nothing but the options and its own sequence, so a longer
 * run (`--count`) starts with exactly the files of a shorter one.
 *
 * TF lengths are log-normal with mean `tfSizeMean` (mu = ln(mean) − sigma²/2), drawn by
 * Box–Muller from xoshiro128** seeded with a SHA-256 of (seed, run, sequence). Math.log/exp/cos
 * are V8's own fdlibm ports, identical on every platform a given Node runs on.
 */
export function planStf(o: PlanOptions, index: number): PlannedStf {
  const sequence = o.startSequence + index;
  const random = seededUint32(['tf-lengths', o.seed, o.run, sequence]);
  const mu = Math.log(o.tfSizeMean) - (o.tfSizeSigma * o.tfSizeSigma) / 2;
  const tfLengths: number[] = new Array(o.tfsPerStf);
  let payloadBytes = 0;
  for (let i = 0; i < o.tfsPerStf; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform(random)));
    const angle = 2 * Math.PI * uniform(random);
    const pair = [radius * Math.cos(angle), radius * Math.sin(angle)];
    for (let k = 0; k < 2 && i + k < o.tfsPerStf; k++) {
      const length = Math.max(1, Math.round(Math.exp(mu + o.tfSizeSigma * (pair[k] as number))));
      tfLengths[i + k] = length;
      payloadBytes += length;
    }
  }
  const intervalNs = BigInt(Math.round(o.stfIntervalMs * 1e6));
  const startNs = BigInt(o.startTimeMs) * 1_000_000n + BigInt(index) * intervalNs;
  return {
    index,
    sequence,
    filename: stfFilename(o.run, sequence),
    tfLengths,
    payloadBytes,
    startNs,
    endNs: startNs + intervalNs,
  };
}

/** Every STF of the run; for tests and small runs (the command plans one STF at a time). */
export function planRun(o: PlanOptions): PlannedStf[] {
  return Array.from({ length: o.count }, (_, i) => planStf(o, i));
}

/** What workers/stf-writer.ts needs to write `stf`. */
export function describeStf(o: PlanOptions, stf: PlannedStf): StfDescription {
  return {
    runNumber: BigInt(o.run),
    stfSequence: BigInt(stf.sequence),
    state: o.state,
    substate: o.substate,
    startNs: stf.startNs,
    endNs: stf.endNs,
    tfLengths: stf.tfLengths,
  };
}

const BLOCK_BYTES = 4096;
const BLOCK_WORDS = BLOCK_BYTES / 4;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Payload bytes of one STF, for writeStf's `fill(tf, offset, into)`. The stream is cut into
 * 4-KiB blocks, each generated from its own (tf, block number) seed, so any offset and any
 * chunking give the same bytes without replaying the stream from the start. xorshift128 keeps
 * it at memcpy-like speed; the words are stored little-endian on every host.
 */
export function payloadFill(
  seed: string,
  run: number,
  sequence: number,
): (tf: number, offset: number, into: Buffer) => void {
  const key = keyWords(['payload', seed, run, sequence]);
  const words = new Uint32Array(BLOCK_WORDS);
  const block = Buffer.from(words.buffer);
  let cachedTf = -1;
  let cachedBlock = -1;
  return (tf, offset, into) => {
    let done = 0;
    while (done < into.length) {
      const position = offset + done;
      const number = Math.floor(position / BLOCK_BYTES);
      if (number !== cachedBlock || tf !== cachedTf) {
        fillBlock(words, key, tf, number);
        if (!LITTLE_ENDIAN) block.swap32();
        cachedTf = tf;
        cachedBlock = number;
      }
      const from = position - number * BLOCK_BYTES;
      done += block.copy(into, done, from, Math.min(BLOCK_BYTES, from + into.length - done));
    }
  };
}

function fillBlock(words: Uint32Array, key: readonly number[], tf: number, block: number): void {
  // Block numbers pass 2^32 only beyond 16 TiB per TF; the high part is mixed in all the same.
  const high = Math.floor(block / 0x100000000);
  const a = fmix32((key[0] as number) ^ fmix32(tf ^ 0x2545f491));
  const b = fmix32(a ^ fmix32((block >>> 0) ^ Math.imul(high, 0x9e3779b1)));
  let x = fmix32(b ^ (key[1] as number));
  let y = fmix32(x ^ (key[2] as number));
  let z = fmix32(y ^ (key[3] as number));
  let w = fmix32(z ^ 0x9e3779b9);
  if ((x | y | z | w) === 0) x = 1;
  for (let i = 0; i < BLOCK_WORDS; i++) {
    const t = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = (w ^ (w >>> 19) ^ t ^ (t >>> 8)) >>> 0;
    words[i] = w;
  }
}

/** murmur3's finalizer: every input bit affects every output bit. */
function fmix32(h: number): number {
  let x = h >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

function keyWords(key: readonly unknown[]): number[] {
  const digest = createHash('sha256').update(JSON.stringify(key)).digest();
  return [0, 4, 8, 12].map((at) => digest.readUInt32LE(at));
}

/** Uniform in [0, 1) from 32 random bits. */
function uniform(next: () => number): number {
  return next() / 4294967296;
}
