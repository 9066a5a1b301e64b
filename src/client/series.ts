// Fixed-memory aggregates behind the client's views: a ring of time buckets and a log2 size histogram.

/**
 * Counts per time bucket over a sliding window of `length` buckets. Memory is the ring, whatever the
 * message rate or how long the client runs; an event older than the window is dropped.
 */
export class RingSeries {
  private readonly buckets: Float64Array;
  /** Absolute number (time / bucketMs) of the newest bucket written, -Infinity before the first. */
  private head = Number.NEGATIVE_INFINITY;

  constructor(
    readonly bucketMs: number,
    readonly length: number,
  ) {
    this.buckets = new Float64Array(length);
  }

  add(t: number, n = 1): void {
    const b = Math.floor(t / this.bucketMs);
    if (b > this.head) {
      const steps = Number.isFinite(this.head) ? Math.min(this.length, b - this.head) : this.length;
      for (let i = 1; i <= steps; i++)
        this.buckets[(((b - steps + i) % this.length) + this.length) % this.length] = 0;
      this.head = b;
    } else if (b <= this.head - this.length) {
      return;
    }
    this.buckets[((b % this.length) + this.length) % this.length]! += n;
  }

  /** The window ending with the bucket of `now`, oldest first; buckets nothing was added to are 0. */
  values(now: number): number[] {
    const nowB = Math.floor(now / this.bucketMs);
    const out: number[] = [];
    for (let i = 0; i < this.length; i++) {
      const b = nowB - (this.length - 1) + i;
      const held = b <= this.head && b > this.head - this.length;
      out.push(held ? this.buckets[((b % this.length) + this.length) % this.length]! : 0);
    }
    return out;
  }

  sum(now: number): number {
    return this.values(now).reduce((a, b) => a + b, 0);
  }
}

export interface HistogramBucket {
  /** Inclusive lower edge in bytes. */
  lo: number;
  /** Exclusive upper edge in bytes; null for the open-ended last bucket. */
  hi: number | null;
  count: number;
}

/** 0 → [0, 1 KiB), then [1 KiB, 2 KiB), [2 KiB, 4 KiB) … up to an open-ended [1 TiB, ∞). */
export const LOG2_BUCKETS = 32;

export function log2Index(size: number): number {
  if (size < 1024) return 0;
  return Math.min(LOG2_BUCKETS - 1, Math.floor(Math.log2(size / 1024)) + 1);
}

export function log2Edge(index: number): number {
  return index === 0 ? 0 : 1024 * 2 ** (index - 1);
}

export function log2Buckets(counts: ArrayLike<number>): HistogramBucket[] {
  const out: HistogramBucket[] = [];
  for (let i = 0; i < LOG2_BUCKETS; i++) {
    out.push({ lo: log2Edge(i), hi: i === LOG2_BUCKETS - 1 ? null : log2Edge(i + 1), count: counts[i] ?? 0 });
  }
  return out;
}
