// Replays the outbox in order once swf-monitor answers again: in batches, retried with backoff.

import { setTimeout as sleep } from 'node:timers/promises';
import { FastmonError, messageOf } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import type { Outbox, OutboxEntry } from './outbox.js';

interface Failure {
  err: unknown;
  seq: number;
}

export type OutboxHandler = (payload: unknown, signal: AbortSignal) => Promise<void>;

/**
 * An entry's replay in two steps, so that the entries of a batch can share the registrar's group
 * commits while their announcements keep the outbox's order: `prepare` runs for every entry of a
 * batch at once (their registrations travel in the same statements), `finish` runs entry by entry,
 * in order, each once its entry and every earlier one are prepared and finished.
 */
export interface OutboxReplay<P> {
  prepare(payload: unknown, signal: AbortSignal): Promise<P>;
  finish(prepared: P, signal: AbortSignal): Promise<void>;
}

export interface OutboxDrainerOptions {
  /** First retry delay after a failure (default 500 ms); doubles per failure of the same entry. */
  initialDelayMs?: number;
  /** Ceiling of the retry delay (default 30 s). */
  maxDelayMs?: number;
  logger?: Logger;
  /** Called when depth, draining or the counters change: the hook for metrics and the heartbeat. */
  onChange?: () => void;
  /**
   * Entries replayed together (default 1). Over 1, only for entries whose `prepare` steps do not
   * depend on each other: they run at the same time.
   */
  batchSize?: number;
}

/**
 * Strict order: broadcasts go out in the order the samples were taken, and a later entry may rely on an
 * earlier one (a FastMonFile row needs its Run and StfFile to exist in swf-monitor). So a failing entry
 * blocks the ones behind it and is retried forever; a permanent error is the handler's to turn into
 * success (log it and return), since only the handler knows what is permanent.
 *
 * At least once: an entry is completed only after its handler (both steps) succeeded. In a batch,
 * the entries before a failing one are finished and completed, the failing one and those after it
 * are not finished and are replayed from the failing one on (their `prepare` runs again: it must be
 * idempotent, as a registration is).
 */
export class OutboxDrainer<P = void> {
  private readonly controller = new AbortController();
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly logger: Logger;
  private readonly onChange: (() => void) | undefined;
  private readonly replay: OutboxReplay<P>;
  private readonly batchSize: number;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private woken = false;
  private busy = false;
  private replayedCount = 0;
  private failureCount = 0;

  constructor(
    private readonly outbox: Outbox,
    handler: OutboxHandler | OutboxReplay<P>,
    options: OutboxDrainerOptions = {},
  ) {
    // A plain handler is the prepare step alone (its P is void).
    this.replay =
      typeof handler === 'function'
        ? ({ prepare: handler, finish: async () => {} } as unknown as OutboxReplay<P>)
        : handler;
    this.batchSize = options.batchSize ?? 1;
    if (!Number.isSafeInteger(this.batchSize) || this.batchSize < 1) {
      throw new FastmonError(
        'CONFIG_INVALID',
        `outbox drainer option batchSize must be a positive integer, got ${options.batchSize}`,
      );
    }
    this.initialDelayMs = checkDelay('initialDelayMs', options.initialDelayMs ?? 500);
    this.maxDelayMs = Math.max(this.initialDelayMs, checkDelay('maxDelayMs', options.maxDelayMs ?? 30_000));
    this.logger = options.logger ?? silentLogger();
    this.onChange = options.onChange;
  }

  /** True while entries are being replayed (or waiting out a backoff); false once the outbox is empty. */
  get draining(): boolean {
    return this.busy;
  }

  /** Entries handled and completed since start(). */
  get replayed(): number {
    return this.replayedCount;
  }

  /** Failed attempts (handler errors and failed completions) since start(). */
  get failures(): number {
    return this.failureCount;
  }

  start(): void {
    if (this.loop || this.controller.signal.aborted) return;
    this.loop = this.run().catch((err) => {
      this.logger.error({ err, outbox: this.outbox.file }, 'outbox drainer stopped unexpectedly');
    });
  }

  /** Something was appended: replay it now if the drainer is idle (a backoff is not cut short). */
  notify(): void {
    this.woken = true;
    this.wake?.();
  }

  /** Stops the loop; resolves once the handler call in progress, if any, has settled. */
  async close(): Promise<void> {
    this.controller.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    let delay = this.initialDelayMs;
    let attempt = 0;
    while (!signal.aborted) {
      const batch = this.nextBatch();
      if (batch.length === 0) {
        this.setDraining(false);
        await this.idle(signal);
        continue;
      }
      this.setDraining(true);
      attempt++;
      const failure = await this.replayBatch(batch, signal);
      if (failure === null) {
        delay = this.initialDelayMs;
        attempt = 0;
        continue;
      }
      if (signal.aborted) break;
      this.failureCount++;
      const retryInMs = Math.round(delay / 2 + (Math.random() * delay) / 2);
      const { err, seq } = failure;
      this.logger.warn(
        { err, code: (err as { code?: unknown }).code, reason: messageOf(err), seq, attempt, retryInMs },
        'outbox replay failed; retrying the same entry',
      );
      this.changed();
      await sleep(retryInMs, undefined, { signal }).catch(() => {});
      delay = Math.min(delay * 2, this.maxDelayMs);
    }
    this.setDraining(false);
  }

  /** The oldest pending entries, at most batchSize. */
  private nextBatch(): OutboxEntry[] {
    const batch: OutboxEntry[] = [];
    for (const entry of this.outbox.pending()) {
      batch.push(entry);
      if (batch.length >= this.batchSize) break;
    }
    return batch;
  }

  /**
   * Prepares every entry at once, then finishes and completes them in order up to the first
   * failure (returned; null when all went through). Returns only once every prepare has settled,
   * so an entry is never in two replays at the same time.
   */
  private async replayBatch(batch: OutboxEntry[], signal: AbortSignal): Promise<Failure | null> {
    // async: a prepare step that throws instead of rejecting fails its entry, not the loop.
    const prepared = batch.map((entry) =>
      (async () => this.replay.prepare(entry.payload, signal))().then(
        (value) => ({ ok: true as const, value }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    );
    const completions: Promise<void>[] = [];
    let failure: Failure | null = null;
    for (const [i, entry] of batch.entries()) {
      const result = await (prepared[i] as (typeof prepared)[number]);
      try {
        if (!result.ok) throw result.err;
        await this.replay.finish(result.value, signal);
      } catch (err) {
        failure = { err, seq: entry.seq };
        break;
      }
      // Completed even when closing: the work is done, and replaying it after a restart would repeat it.
      completions.push(
        this.outbox.complete(entry.seq).then(() => {
          this.replayedCount++;
          this.changed();
        }),
      );
    }
    // The removals share the store's commits; one that fails leaves its entry to be replayed.
    for (const [i, done] of (await Promise.allSettled(completions)).entries()) {
      if (done.status === 'rejected' && failure === null) {
        failure = { err: done.reason, seq: (batch[i] as OutboxEntry).seq };
      }
    }
    await Promise.allSettled(prepared);
    return failure;
  }

  /** Sleeps until notify() or close(); a notify() that came while busy is not lost. */
  private async idle(signal: AbortSignal): Promise<void> {
    if (this.woken || signal.aborted) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.wake = null;
    this.woken = false;
  }

  private setDraining(draining: boolean): void {
    if (this.busy === draining) return;
    this.busy = draining;
    this.changed();
  }

  private changed(): void {
    try {
      this.onChange?.();
    } catch (err) {
      this.logger.warn({ err }, 'outbox drainer onChange callback failed');
    }
  }
}

function checkDelay(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new FastmonError(
      'CONFIG_INVALID',
      `outbox drainer option ${name} must be a non-negative number of milliseconds, got ${value}`,
    );
  }
  return value;
}
