// Group commit: items from every caller queue up and are written together, one batch per statement.

/** What the writer says about one item of a batch: its value, or why this item alone failed. */
export type ItemResult<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface GroupCommitOptions<I, O> {
  /** Writes a batch; returns one result per item, in order. A throw fails every item of the batch. */
  write: (items: I[]) => Promise<ItemResult<O>[]>;
  /** A batch is written as soon as it holds this many items. */
  maxItems: number;
  /** ...or this long after its first item arrived (ms), whichever comes first; 0: in the next turn of the event loop. */
  maxDelayMs: number;
  /**
   * Batches being written at once; more wait (their items keep joining the queue meanwhile). Lanes
   * shared with other group commits when they write through the same connections.
   */
  concurrency: number | Lanes;
}

/**
 * Writers (connections) shared by several group commits. A batch is cut from its queue only once a
 * lane is free: a batch cut earlier would wait in the connection pool's queue with its items fixed,
 * while the items arriving meanwhile wait for the batch after it, and every small batch costs a commit.
 */
export class Lanes {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError('Lanes: size must be >= 1');
    this.free = size;
  }

  /** Takes a lane if one is free. */
  take(): boolean {
    if (this.free === 0) return false;
    this.free--;
    return true;
  }

  /** Gives a lane back and offers it to the group commits that share it, each in turn. */
  give(): void {
    this.free++;
    // Round robin: the first one asked this time is asked last next time, so no queue starves.
    const first = this.waiting.shift();
    if (first) this.waiting.push(first);
    for (const offer of [...this.waiting]) {
      if (this.free === 0) break;
      offer();
    }
  }

  /** Called whenever a lane is given back (the group commit takes it if it has a batch to write). */
  listen(offer: () => void): void {
    this.waiting.push(offer);
  }
}

interface Timer {
  cancel(): void;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

/**
 * Throughput comes from amortising a commit over many rows, latency from not waiting for a full
 * batch: a batch leaves when it is full or when its first item has waited `maxDelayMs` (0 for the
 * registrar: the next turn of the event loop, which is enough for the samples of one STF, registered
 * in the same turn, to travel together). While every writer is busy the queue grows, and what gathered leaves as soon as a
 * writer is free: batches get bigger exactly when the load is high.
 */
export class GroupCommit<I, O> {
  private queue: Pending<I, O>[] = [];
  private timer: Timer | null = null;
  private writing = 0;
  private readonly lanes: Lanes;
  private readonly idle: Array<() => void> = [];
  private batchCount = 0;
  private itemCount = 0;

  constructor(private readonly options: GroupCommitOptions<I, O>) {
    const { concurrency } = options;
    if (!(options.maxItems >= 1) || !(options.maxDelayMs >= 0)) {
      throw new RangeError('GroupCommit: maxItems must be >= 1, maxDelayMs >= 0');
    }
    this.lanes = concurrency instanceof Lanes ? concurrency : new Lanes(concurrency);
    this.lanes.listen(() => this.laneFree());
  }

  /** Resolves when the batch holding the item has been written (committed). */
  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Batches written and items in them, since construction (for metrics and the bench). */
  get stats(): { batches: number; items: number } {
    return { batches: this.batchCount, items: this.itemCount };
  }

  /** Writes what is queued and resolves once nothing is queued or being written. */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.writing > 0) {
      this.flushNow();
      await new Promise<void>((resolve) => this.idle.push(resolve));
    }
  }

  private schedule(): void {
    if (this.queue.length >= this.options.maxItems) this.flushNow();
    else this.timer ??= this.later();
  }

  /** maxDelayMs 0: the next turn of the event loop (what was added in this one travels together). */
  private later(): Timer {
    const flush = () => this.flushNow();
    if (this.options.maxDelayMs > 0) {
      const t = setTimeout(flush, this.options.maxDelayMs);
      return { cancel: () => clearTimeout(t) };
    }
    const i = setImmediate(flush);
    return { cancel: () => clearImmediate(i) };
  }

  private flushNow(): void {
    if (this.timer) {
      this.timer.cancel();
      this.timer = null;
    }
    while (this.queue.length > 0 && this.lanes.take()) {
      const batch = this.queue.splice(0, this.options.maxItems);
      this.writing++;
      void this.write(batch).finally(() => {
        this.writing--;
        this.lanes.give();
        if (this.queue.length === 0 && this.writing === 0) for (const wake of this.idle.splice(0)) wake();
      });
    }
    if (this.queue.length === 0 && this.writing === 0) for (const wake of this.idle.splice(0)) wake();
  }

  /**
   * A lane came free. Items that queued while every lane was busy have waited a commit already:
   * they go now, unless their own delay is still running (then they gather a little more).
   */
  private laneFree(): void {
    if (this.queue.length > 0 && (this.timer === null || this.queue.length >= this.options.maxItems)) {
      this.flushNow();
    }
  }

  private async write(batch: Pending<I, O>[]): Promise<void> {
    this.batchCount++;
    this.itemCount += batch.length;
    let results: ItemResult<O>[];
    try {
      results = await this.options.write(batch.map((p) => p.item));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i];
      if (!r) p.reject(new Error('group commit: the writer returned fewer results than items'));
      else if (r.ok) p.resolve(r.value);
      else p.reject(r.error);
    });
  }
}
