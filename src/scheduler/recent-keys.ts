// A bounded memory of keys: the last `capacity` added, the oldest forgotten first, off the JS heap.

import { fingerprint } from '../run/fingerprint.js';

/** Slots per remembered key at least (linear probing stays short at half full). */
const SLOTS_PER_KEY = 2;

/**
 * Keys are kept as 106-bit fingerprints (two 53-bit ones) in a ring, in the order they came, and
 * found through an open-addressing table of ring positions (2 to 4 slots of 4 bytes a key): 2.6 MB
 * for 100,000 keys, allocated once. The scheduler used to keep the key strings in a Set: 7.7 MB
 * on the V8 heap when full, the only live data of the agent that grew under a steady load, and V8
 * sets the heap's next limit at up to four times what is live (BENCHMARKS.md, "Memory").
 *
 * A key taken for one remembered is a redelivery to the scheduler, which would not sample that STF:
 * with 100,000 keys remembered, the chance for a new key is 100,000 / 2¹⁰⁶, about 10⁻²⁶.
 */
export class RecentKeys {
  /** Two doubles per key, in the order the keys came; `oldest` is where the next one goes once full. */
  private readonly ring: Float64Array;
  /** Ring position + 1 of the key whose first fingerprint hashes here (or just after); 0: empty. */
  private readonly table: Int32Array;
  private readonly mask: number;
  private count = 0;
  private oldest = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    }
    this.ring = new Float64Array(capacity * 2);
    let slots = 8;
    while (slots < capacity * SLOTS_PER_KEY) slots *= 2;
    this.table = new Int32Array(slots);
    this.mask = slots - 1;
  }

  get size(): number {
    return this.count;
  }

  has(key: string): boolean {
    return this.slotOf(fingerprint(key, 0), fingerprint(key, 1)) >= 0;
  }

  /** Remembers `key`, forgetting the oldest key when full. A key already remembered keeps its place. */
  add(key: string): void {
    const first = fingerprint(key, 0);
    const second = fingerprint(key, 1);
    if (this.slotOf(first, second) >= 0) return;
    let at: number;
    if (this.count < this.capacity) {
      at = this.count++;
    } else {
      at = this.oldest;
      const slot = this.slotOf(this.ring[2 * at] as number, this.ring[2 * at + 1] as number);
      // Every key in the ring is in the table; one missing means the table is corrupt (a bug here).
      if (slot < 0) throw new Error('RecentKeys: the oldest key is missing from its table');
      this.remove(slot);
      this.oldest = (at + 1) % this.capacity;
    }
    this.ring[2 * at] = first;
    this.ring[2 * at + 1] = second;
    let slot = this.home(first);
    while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
    this.table[slot] = at + 1;
  }

  private home(first: number): number {
    return (first >>> 0) & this.mask;
  }

  /** The table slot holding the key with these fingerprints, or -1. */
  private slotOf(first: number, second: number): number {
    for (let slot = this.home(first); ; slot = (slot + 1) & this.mask) {
      const entry = this.table[slot] as number;
      if (entry === 0) return -1;
      if (this.ring[2 * (entry - 1)] === first && this.ring[2 * entry - 1] === second) return slot;
    }
  }

  /**
   * Empties the slot and moves later entries of its probe run back into the gap, so that lookups
   * never need markers for removed keys (the table would fill with them as the ring turns).
   */
  private remove(slot: number): void {
    let gap = slot;
    this.table[gap] = 0;
    for (let next = (gap + 1) & this.mask; ; next = (next + 1) & this.mask) {
      const entry = this.table[next] as number;
      if (entry === 0) return;
      const home = this.home(this.ring[2 * (entry - 1)] as number);
      // The entry may fill the gap if the gap lies on its probe path: from its home up to where it is.
      if (((gap - home) & this.mask) < ((next - home) & this.mask)) {
        this.table[gap] = entry;
        this.table[next] = 0;
        gap = next;
      }
    }
  }
}
