// A run's bookkeeping as numbers: the counts fastmon_status and fastmon_summary carry, and the sample-size buckets.

export interface RunCounts {
  stfsReceived: number;
  stfsSampled: number;
  stfsSkipped: number;
  stfsFailed: number;
  stfsDuplicate: number;
  stfsWithoutFile: number;
  tfsRegistered: number;
  /** Of tfsRegistered, the samples that were registered before (a redelivery, a second replay). */
  tfsExisting: number;
  tfsFailed: number;
  bytesSampled: number;
  /** Times the agent handled an stf_ready, retries included; received counts broker deliveries. */
  stfAttempts: number;
  /** STFs of the run that arrived after its final fastmon_status (counted in the others too). */
  stfsLate: number;
}

export function emptyCounts(): RunCounts {
  return {
    stfsReceived: 0,
    stfsSampled: 0,
    stfsSkipped: 0,
    stfsFailed: 0,
    stfsDuplicate: 0,
    stfsWithoutFile: 0,
    tfsRegistered: 0,
    tfsExisting: 0,
    tfsFailed: 0,
    bytesSampled: 0,
    stfAttempts: 0,
    stfsLate: 0,
  };
}

/**
 * Lower edges of the sample-size histogram: 0, then powers of two from 1 KiB to 1 TiB; the last
 * bucket is open-ended. Log buckets, because sample sizes span bytes (testbed JSON STFs) to
 * hundreds of MB (2 GB STFs).
 */
export const SIZE_EDGES: readonly number[] = [0, ...Array.from({ length: 31 }, (_, i) => 1024 * 2 ** i)];

export function sizeBucket(bytes: number): number {
  let i = SIZE_EDGES.length - 1;
  while (i > 0 && bytes < (SIZE_EDGES[i] as number)) i--;
  return i;
}
