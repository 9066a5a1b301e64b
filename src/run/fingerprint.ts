// 53-bit fingerprints of names and keys, for sets kept in flat tables off the JS heap.

/**
 * Two variants, independent enough to be used together as one 106-bit fingerprint: each mixes the
 * UTF-16 code units with its own starting values and multipliers.
 */
const VARIANTS: readonly { a: number; b: number; ma: number; mb: number }[] = [
  { a: 0x811c9dc5, b: 0x9e3779b9, ma: 0x01000193, mb: 0x5bd1e995 },
  { a: 0x050c5d1f, b: 0x7f4a7c15, ma: 0x2c1b3c6d, mb: 0x27d4eb2d },
];

/**
 * A non-zero integer below 2⁵³ (exact in a double): two 32-bit multiplicative hashes over the UTF-16
 * code units, each finished with an avalanche step so that names differing in their last digit land far
 * apart. The low 32 bits (`key >>> 0`) are the ones to pick a slot with in a power-of-two table.
 */
export function fingerprint(text: string, variant: 0 | 1 = 0): number {
  const v = VARIANTS[variant] as (typeof VARIANTS)[number];
  let a = v.a;
  let b = v.b;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, v.ma);
    b = Math.imul(b ^ c, v.mb);
    b ^= b >>> 15;
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
  a ^= a >>> 16;
  b = Math.imul(b ^ (b >>> 16), 0x7feb352d);
  b = Math.imul(b ^ (b >>> 15), 0x846ca68b);
  b ^= b >>> 16;
  return (b & 0x1fffff) * 0x100000000 + (a >>> 0) || 1;
}
