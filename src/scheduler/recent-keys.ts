// A bounded memory of keys: the last `capacity` added, the oldest forgotten first.

/**
 * The order lives in a ring beside the Set. Evicting in the Set's own order (`set.values().next()`)
 * looks cheap but walks over every entry deleted since V8 last rehashed the table: with 100,000 keys
 * that is up to ~160,000 dead entries, and a remembered STF cost up to 140 µs of the main thread
 * instead of ~1 µs once the memory was full (Node 20; `npm run bench`, micro).
 */
export class RecentKeys {
  private readonly keys = new Set<string>();
  private readonly order: string[] = [];
  /** Where the oldest key sits in `order` once it is full, and so where the next one goes. */
  private oldest = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    }
  }

  get size(): number {
    return this.keys.size;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Remembers `key`, forgetting the oldest key when full. A key already remembered keeps its place. */
  add(key: string): void {
    if (this.keys.has(key)) return;
    if (this.order.length < this.capacity) {
      this.order.push(key);
    } else {
      this.keys.delete(this.order[this.oldest] as string);
      this.order[this.oldest] = key;
      this.oldest = (this.oldest + 1) % this.capacity;
    }
    this.keys.add(key);
  }
}
