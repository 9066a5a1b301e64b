// One pass over STF directories: walk, filter (pattern, age, shard, ledger), feed the scheduler in bounded batches.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from '../config/load.js';
import { isInputFault, messageOf, SKIP_REASONS } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { runFromFilename, type StfReady } from '../messaging/codec.js';
import type { Scheduler, StfResult } from '../scheduler/scheduler.js';
import type { Ledger, LedgerRecord } from './ledger.js';
import { compilePatterns, inShard, parseShard, withinLookback } from './select.js';
import { type WalkFile, walkBatches } from './walk.js';

export interface ScanCounts {
  seen: number;
  sampled: number;
  skipped: number;
  failed: number;
  /** Handled before (the ledger says so, and the file has not changed since). */
  already: number;
  /** Older than the lookback window. */
  old: number;
  /** Belong to another shard. */
  otherShard: number;
  /** Could not be read or are not STFs (reason in the log): permissions, loops, zero bytes, names. */
  unreadable: number;
}

export function emptyScanCounts(): ScanCounts {
  return { seen: 0, sampled: 0, skipped: 0, failed: 0, already: 0, old: 0, otherShard: 0, unreadable: 0 };
}

export interface ScanContext {
  /** Where the files found go: the same pipeline as an stf_ready from the broker. */
  scheduler: Pick<Scheduler, 'submit'>;
  ledger: Ledger;
  config: Config;
  logger: Logger;
  counts: ScanCounts;
  signal?: AbortSignal;
  /** Called as counts change, for the progress bar. */
  onProgress?: () => void;
}

/** Scans `dirs` once. Resolves when every accepted file is handled. */
export async function scanOnce(dirs: string[], ctx: ScanContext): Promise<void> {
  const { config } = ctx;
  const match = compilePatterns(config.scan.patterns);
  const shard = config.scan.shard ? parseShard(config.scan.shard) : null;
  // Files handed over and not yet handled: the walk waits while the pipeline is full. A count and
  // one waiter, not Promise.race over the set (which attaches a reaction to every pending file
  // for each file handed over: work and garbage that grow with the limit).
  let pending = 0;
  let freed: (() => void) | null = null;
  // The first file whose handling threw (a bug: handleFile reports a file's own trouble as counts).
  let thrown: { err: unknown } | null = null;
  const settled = () => {
    pending--;
    freed?.();
    freed = null;
  };
  const wait = async (until: number) => {
    while (pending > until && !thrown) await new Promise<void>((resolve) => (freed = resolve));
    if (thrown) throw thrown.err;
  };
  // Ledger writes of handled files: awaited before the pass ends, not by the pipeline's slots.
  const recording = new Set<Promise<void>>();
  const limit = config.agent.maxInFlight * 2;
  const now = Date.now();
  const walking = walkBatches(dirs, { recursive: config.scan.recursive, match, signal: ctx.signal });
  for await (const batch of walking) {
    // The ledger is asked once per step of the walk, about the files the other checks kept.
    const candidates: WalkFile[] = [];
    for (const entry of batch) {
      if (entry.kind === 'skip') {
        ctx.counts.unreadable++;
        ctx.logger.warn(
          { path: entry.path, code: SKIP_REASONS[entry.reason], reason: entry.reason },
          `file skipped: ${entry.message}`,
        );
        ctx.onProgress?.();
        continue;
      }
      ctx.counts.seen++;
      if (!withinLookback(entry.mtimeMs, now, config.scan.lookbackMinutes)) {
        ctx.counts.old++;
        ctx.onProgress?.();
      } else if (shard && !inShard(entry.relative, shard)) {
        ctx.counts.otherShard++;
        ctx.onProgress?.();
      } else {
        candidates.push(entry);
      }
    }
    const known = ctx.ledger.getMany(candidates.map((entry) => entry.path));
    for (const entry of candidates) {
      if (unchanged(known.get(entry.path), entry.size, entry.mtimeMs)) {
        ctx.counts.already++;
      } else {
        pending++;
        handleFile(entry, ctx, recording).then(settled, (err: unknown) => {
          thrown ??= { err };
          settled();
        });
        if (pending >= limit || thrown) await wait(limit - 1);
      }
      ctx.onProgress?.();
    }
  }
  await wait(0);
  await Promise.all(recording);
}

export function isUnchanged(ledger: Ledger, file: string, size: number, mtimeMs: number): boolean {
  return unchanged(ledger.get(file), size, mtimeMs);
}

function unchanged(previous: LedgerRecord | undefined, size: number, mtimeMs: number): boolean {
  return previous !== undefined && previous.size === size && previous.mtimeMs === mtimeMs;
}

/**
 * An STF found on disk as the stf_ready nobody sent: nobody announced it, so the scheduler
 * registers its Run and StfFile in swf-monitor before the samples (`registerStf`).
 */
export function diskStf(file: string, name = path.basename(file)): StfReady {
  return {
    msgType: 'stf_ready',
    runId: runFromFilename(name),
    executionId: null,
    namespace: null,
    state: null,
    substate: null,
    filename: name,
    fileUrl: pathToFileURL(file).href,
    sizeBytes: null,
    checksum: null,
    sequence: null,
    tfCount: null,
  };
}

/**
 * Hands one complete file to the scheduler and records the outcome in the ledger. With `recording`, the
 * ledger write is left there instead of awaited: the file's samples are committed by then, and a
 * ledger record lost to a crash only means the file is read again (its samples are not registered
 * twice: tf_filename is unique). The slot is free one commit earlier, which is what a scan waits on.
 */
export async function handleFile(
  found: Pick<WalkFile, 'path' | 'size' | 'mtimeMs' | 'local'> & { name?: string },
  ctx: ScanContext,
  recording?: Set<Promise<void>>,
): Promise<void> {
  const { path: file, size, mtimeMs } = found;
  // The walk's name is a string of its own. A base name sliced from the path keeps the whole path
  // alive for as long as the run keeps the STF's name (src/run/run-states.ts, one per STF of the
  // run): 117 against 61 MB of heap per million names.
  const stf = diskStf(file, found.name);
  const result: StfResult = await ctx.scheduler.submit(stf, `file:${file}`, {
    registerStf: true,
    found: { sizeBytes: size, local: found.local },
  });
  switch (result.outcome) {
    case 'sampled':
      if (result.failed > 0 || (result.unbroadcast ?? 0) > 0) ctx.counts.failed++;
      else ctx.counts.sampled++;
      break;
    case 'skipped':
    case 'duplicate':
      ctx.counts.skipped++;
      break;
    default:
      ctx.counts.failed++;
  }
  ctx.onProgress?.();
  const complete =
    result.outcome === 'sampled' ? result.failed === 0 && (result.unbroadcast ?? 0) === 0 : true;
  // A failure the same bytes will always produce (the catalogue's inputFault) is recorded, so a
  // restart does not retry it; one of the monitor, the broker or the disk is not: the next pass retries.
  const permanent = result.outcome !== 'failed' || isInputFault(result.error?.code ?? '');
  if (complete && permanent) {
    const outcome =
      result.outcome === 'sampled' ? 'sampled' : result.outcome === 'failed' ? 'failed' : 'skipped';
    const recorded = ctx.ledger.record(file, { size, mtimeMs, outcome });
    if (!recording) return recorded;
    const settled = recorded.catch((err: unknown) => {
      ctx.logger.error(
        { code: (err as { code?: string }).code ?? 'LEDGER_WRITE_FAILED', path: file },
        `file handled but not recorded in the ledger (it will be read again): ${messageOf(err)}`,
      );
    });
    recording.add(settled);
    void settled.finally(() => recording.delete(settled));
  }
}
