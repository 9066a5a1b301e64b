// What one handling of an stf_ready adds to the run's counts; a retry of the same delivery takes it back.

import type { RunCounts } from '../messaging/codec.js';

export type Outcome = 'sampled' | 'skipped' | 'failed' | 'duplicate' | 'no_file';

/**
 * Counts are per broker delivery (README): an stf_ready retried five times inside the agent is one
 * STF received, with the outcome of its last attempt. Each attempt fills a tally, added to the run's
 * counts when the attempt ends; a retry takes the previous attempt's tally back before it starts.
 */
export class Tally {
  readonly counts: Partial<Record<keyof RunCounts, number>> = {};
  readonly errors: Record<string, number> = {};
  /** Sample-size histogram buckets of the samples registered. */
  readonly buckets: number[] = [];
  outcome: Outcome | null = null;
  reverted = false;

  add(field: keyof RunCounts, n = 1): void {
    this.counts[field] = (this.counts[field] ?? 0) + n;
  }

  error(code: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }
}
