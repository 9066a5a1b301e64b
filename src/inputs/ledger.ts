// The processed-file ledger: which STF files scan and watch handled, in the local store's `ledger` table.

import type { Store } from '../store/store.js';

export type LedgerOutcome = 'sampled' | 'skipped' | 'failed';

export interface LedgerRecord {
  size: number;
  mtimeMs: number;
  outcome: LedgerOutcome;
}

const OUTCOMES: readonly LedgerOutcome[] = ['sampled', 'skipped', 'failed'];

/**
 * record() and forget() resolve once their transaction is committed; get() reads through the main
 * thread's read-only connection (an index lookup, a few microseconds), so it shows committed
 * records only, and nothing about the files is held in memory. Keys are any JS string.
 */
export class Ledger {
  private readonly lookup;
  private readonly lookupMany;
  private readonly count;

  constructor(
    private readonly store: Store,
    /** Whether close() releases the store. */
    private readonly owned = false,
  ) {
    this.lookup = store.reader.prepare(
      'SELECT size, mtime_ms AS mtimeMs, outcome FROM ledger WHERE path = ?',
    );
    // One statement for a step of the walk: the keys travel as one JSON array.
    this.lookupMany = store.reader
      .prepare(
        'SELECT path, size, mtime_ms, outcome FROM ledger WHERE path IN (SELECT value FROM json_each(?))',
      )
      .raw();
    this.count = store.reader.prepare('SELECT count(*) FROM ledger').pluck();
  }

  get file(): string {
    return this.store.file;
  }

  /** Entries (a count over the table: for logs, not for every file). */
  get size(): number {
    return this.count.get() as number;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  get(key: string): LedgerRecord | undefined {
    return this.lookup.get(key) as LedgerRecord | undefined;
  }

  /**
   * The records of those of `keys` in the ledger, in one query: what a scan asks for each step of
   * its walk (a few hundred files), where one query per file costs most of a second pass.
   */
  getMany(keys: readonly string[]): Map<string, LedgerRecord> {
    const found = new Map<string, LedgerRecord>();
    if (keys.length === 0) return found;
    for (const row of this.lookupMany.iterate(JSON.stringify(keys))) {
      const [path, size, mtimeMs, outcome] = row as [string, number, number, LedgerOutcome];
      found.set(path, { size, mtimeMs, outcome });
    }
    return found;
  }

  /** Resolves once the record is durable; recording a key again replaces its record. */
  async record(key: string, value: LedgerRecord): Promise<void> {
    checkKey(key);
    if (!OUTCOMES.includes(value.outcome))
      throw new TypeError(`ledger outcome must be one of ${OUTCOMES.join(', ')}`);
    if (!Number.isSafeInteger(value.size) || value.size < 0) {
      throw new TypeError(`ledger size must be a non-negative integer, got ${value.size}`);
    }
    if (!Number.isFinite(value.mtimeMs)) {
      throw new TypeError(`ledger mtimeMs must be finite, got ${value.mtimeMs}`);
    }
    await this.store.write({ op: 'ledgerRecord', path: key, ...value });
  }

  /** Resolves once the removal is durable (for files that vanished or must be retried). */
  async forget(key: string): Promise<void> {
    checkKey(key);
    await this.store.write({ op: 'ledgerForget', path: key });
  }

  async close(): Promise<void> {
    if (this.owned) await this.store.release();
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0)
    throw new TypeError('ledger key must be a non-empty string');
}
