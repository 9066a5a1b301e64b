// What one handling of an stf_ready adds to the run's counts; a retry of the same delivery takes it back.

import { type RunCounts, sizeBucket } from './counts.js';

export type Outcome = 'sampled' | 'skipped' | 'failed' | 'duplicate' | 'no_file';

/**
 * Counts are per broker delivery (README): an stf_ready retried five times inside the agent is one
 * STF received, with the outcome of its last attempt. Each attempt fills a tally, which RunStates
 * adds to the run's counts when the attempt ends (record); a retry has RunStates take the previous
 * attempt's tally back before it starts (takeBack).
 */
export class Tally {
  readonly counts: Partial<Record<keyof RunCounts, number>> = {};
  readonly errors: Record<string, number> = {};
  /** Sample-size histogram buckets of the samples registered. */
  readonly buckets: number[] = [];
  outcome: Outcome | null = null;
  /** Taken back by a retry; set by RunStates.takeBack, so that it happens once. */
  reverted = false;

  add(field: keyof RunCounts, n = 1): void {
    this.counts[field] = (this.counts[field] ?? 0) + n;
  }

  error(code: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  /** A sample of this size was registered (the run's size histogram). */
  sample(bytes: number): void {
    this.buckets.push(sizeBucket(bytes));
  }
}
