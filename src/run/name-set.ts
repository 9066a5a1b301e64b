// The set of STF names a run has seen, kept as 53-bit fingerprints in a flat table instead of strings.
//
// A run of the testbed has thousands of STFs, a scan of a large DAQ buffer a million or more. A Set of
// the names holds every string (about 61 bytes per name measured, with V8's table) for the run's whole
// life; this table holds 8 bytes per slot, 11 to 23 bytes per name as it fills and doubles, off the JS
// heap. Two names share a fingerprint with a probability of about n²/2⁵⁴: one in 18,000 runs of a
// million STFs. A name taken for one already seen is counted as a redelivery: the run's distinct count
// is one short (its end waits out the grace and reports one STF missing), while the STF itself is
// sampled and registered under its own name as usual.

import { fingerprint } from './fingerprint.js';

const FIRST_SLOTS = 256;
/** Filled slots at most, as a share of the table (linear probing stays short below it). */
const MAX_LOAD = 0.7;

export class NameSet {
  private slots = new Float64Array(FIRST_SLOTS);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds the name; false when it (or a name with its fingerprint) was added before. */
  add(name: string): boolean {
    if (this.count + 1 > this.slots.length * MAX_LOAD) this.grow();
    if (!place(this.slots, fingerprint(name))) return false;
    this.count++;
    return true;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Float64Array(old.length * 2);
    for (const key of old) if (key !== 0) place(this.slots, key);
  }
}

/** Puts the key in its slot or the next free one; false when it is there already. */
function place(slots: Float64Array, key: number): boolean {
  const mask = slots.length - 1;
  for (let i = (key >>> 0) & mask; ; i = (i + 1) & mask) {
    if (slots[i] === key) return false;
    if (slots[i] === 0) {
      slots[i] = key;
      return true;
    }
  }
}
