// Replays the outbox in order once swf-monitor answers again: one entry at a time, retried with backoff.

import { setTimeout as sleep } from 'node:timers/promises';
import { FastmonError, messageOf } from '../errors.js';
import { type Logger, silentLogger } from '../log/logger.js';
import type { Outbox } from './outbox.js';

export type OutboxHandler = (payload: unknown, signal: AbortSignal) => Promise<void>;

export interface OutboxDrainerOptions {
  /** First retry delay after a failure (default 500 ms); doubles per failure of the same entry. */
  initialDelayMs?: number;
  /** Ceiling of the retry delay (default 30 s). */
  maxDelayMs?: number;
  logger?: Logger;
  /** Called when depth, draining or the counters change: the hook for metrics and the heartbeat. */
  onChange?: () => void;
}

/**
 * Strict order: broadcasts go out in the order the samples were taken, and a later entry may rely on an
 * earlier one (a FastMonFile row needs its Run and StfFile to exist in swf-monitor). So a failing entry
 * blocks the ones behind it and is retried forever; a permanent error is the handler's to turn into
 * success (log it and return), since only the handler knows what is permanent.
 */
export class OutboxDrainer {
  private readonly controller = new AbortController();
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly logger: Logger;
  private readonly onChange: (() => void) | undefined;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private woken = false;
  private busy = false;
  private replayedCount = 0;
  private failureCount = 0;

  constructor(
    private readonly outbox: Outbox,
    private readonly handle: OutboxHandler,
    options: OutboxDrainerOptions = {},
  ) {
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
      const next = this.outbox.pending().next();
      if (next.done) {
        this.setDraining(false);
        await this.idle(signal);
        continue;
      }
      this.setDraining(true);
      const { seq, payload } = next.value;
      attempt++;
      try {
        await this.handle(payload, signal);
        // Completed even when closing: the work is done, and replaying it after a restart would repeat it.
        await this.outbox.complete(seq);
      } catch (err) {
        if (signal.aborted) break;
        this.failureCount++;
        const retryInMs = Math.round(delay / 2 + (Math.random() * delay) / 2);
        this.logger.warn(
          { err, code: (err as { code?: unknown }).code, reason: messageOf(err), seq, attempt, retryInMs },
          'outbox replay failed; retrying the same entry',
        );
        this.changed();
        await sleep(retryInMs, undefined, { signal }).catch(() => {});
        delay = Math.min(delay * 2, this.maxDelayMs);
        continue;
      }
      this.replayedCount++;
      delay = this.initialDelayMs;
      attempt = 0;
      this.changed();
    }
    this.setDraining(false);
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
