// The project's one seeded random stream: xoshiro128** keyed by a SHA-256 of the inputs.

import { createHash } from 'node:crypto';

/**
 * Returns uint32 values. The same key gives the same stream on every machine and Node version:
 * the state comes from SHA-256 and the generator uses only 32-bit integer operations.
 */
export function seededUint32(key: readonly unknown[]): () => number {
  const digest = createHash('sha256').update(JSON.stringify(key)).digest();
  let s0 = digest.readUInt32LE(0);
  let s1 = digest.readUInt32LE(4);
  let s2 = digest.readUInt32LE(8);
  let s3 = digest.readUInt32LE(12);
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  return () => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
}

/** Uniform numbers in [0, 1) from the same stream. */
export function seededUniform(key: readonly unknown[]): () => number {
  const next = seededUint32(key);
  return () => next() / 4294967296;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
