// The outbox of the agent: samples swf-monitor could not take, kept durably and replayed in order.

import type { Config } from '../config/load.js';
import { type FastmonError, isFastmonError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { tfFileRegistered } from '../messaging/codec.js';
import { alreadyExists } from '../monitor/client.js';
import type { Metrics } from '../ops/metrics.js';
import type { Store } from '../store/store.js';
import type { Broadcaster } from './broadcast.js';
import { Outbox } from './outbox.js';
import { OutboxDrainer } from './outbox-drainer.js';
import type { Registrar, SampleRecord } from './registrar.js';

/** A sample swf-monitor could not take, with the run it belongs to (the scheduler's DeferredSample). */
export interface DeferredSample {
  record: SampleRecord;
  runId: string | null;
  executionId: string | null;
}

export interface DeferredDeps {
  config: Config;
  /** The local store the outbox lives in. */
  store: Store;
  logger: Logger;
  metrics: Metrics;
  registrar: Registrar;
  broadcaster: Broadcaster;
  processedBy: () => string;
  /** Called when the depth changed (the heartbeat carries it). */
  onChange?: () => void;
}

/**
 * The outbox keeps what swf-monitor could not take (unreachable, timing out, 5xx after the
 * retries) so the message can be acknowledged; the drainer registers and announces the entries
 * in order once the monitor answers, including entries left by an earlier run (kill -9).
 */
export class DeferredSamples {
  private constructor(
    private readonly outbox: Outbox,
    private readonly drainer: OutboxDrainer<Replayed>,
    private readonly deps: DeferredDeps,
  ) {}

  static async open(deps: DeferredDeps): Promise<DeferredSamples> {
    const { config, logger, metrics } = deps;
    const outbox = await Outbox.open(deps.store, { maxBytes: config.agent.outboxMaxBytes, logger });
    const update = () => {
      metrics.outboxDepth.set(outbox.depth);
      metrics.outboxBytes.set(outbox.bytes);
    };
    update();
    if (outbox.depth > 0)
      logger.warn({ depth: outbox.depth }, 'outbox holds samples from an earlier run; replaying them');
    const drainer = new OutboxDrainer(
      outbox,
      {
        prepare: (payload, signal) => register(deps, payload as DeferredSample, signal),
        finish: (registered) => announce(deps, registered),
      },
      {
        logger,
        onChange: update,
        // The database registrar writes a batch's samples in shared statements (its group commit);
        // through REST, one entry at a time as before.
        batchSize: deps.registrar.kind === 'database' ? config.monitorDb.batchRows : 1,
      },
    );
    drainer.start();
    return new DeferredSamples(outbox, drainer, deps);
  }

  get depth(): number {
    return this.outbox.depth;
  }

  /** Durable when it resolves; rejects with OUTBOX_FULL past the size limit. */
  async defer(sample: DeferredSample): Promise<void> {
    await this.outbox.append(sample);
    this.deps.metrics.outboxDepth.set(this.outbox.depth);
    this.drainer.notify();
    this.deps.onChange?.();
  }

  /** What is still in the outbox stays there, durable, for the next start. */
  async close(): Promise<void> {
    await this.drainer.close();
    await this.outbox.close();
  }
}

/**
 * Only a definitive answer about the sample ends an outbox entry without its notification:
 * swf-monitor's 400 for the row itself (a field it will never take). An "already exists" is
 * success once its row is read; anything else (an unreadable row, 401/403 until the token is
 * fixed, 404/429 from a proxy, a timeout) is retried like an unavailable monitor, so an entry
 * is never dropped with its sample unannounced.
 */
export function isDefinitiveRefusal(err: unknown): err is FastmonError {
  return (
    isFastmonError(err, 'MONITOR_REJECTED') &&
    err.details?.status === 400 &&
    (err.details?.method === 'POST' || err.details?.method === 'SQL') &&
    !alreadyExists(err, 'tf_filename')
  );
}

/** An outbox entry registered (null: refused for good, and logged). */
type Replayed = { d: DeferredSample; tfFileId: string } | null;

/** The entry's registration; the entries of a batch register at once. */
async function register(deps: DeferredDeps, d: DeferredSample, signal: AbortSignal): Promise<Replayed> {
  const { registrar, metrics, logger } = deps;
  try {
    return { d, tfFileId: (await registrar.register(d.record, signal)).tfFileId };
  } catch (err) {
    if (isDefinitiveRefusal(err)) {
      metrics.tfsFailed.inc({ code: err.code });
      logger.error(
        { code: err.code, tf_filename: d.record.tfFilename },
        `outbox entry refused: ${err.message}`,
      );
      return null;
    }
    throw err;
  }
}

/** The entry's notification, in the outbox's order. */
async function announce(deps: DeferredDeps, registered: Replayed): Promise<void> {
  if (registered === null) return;
  const { broadcaster, metrics } = deps;
  const { d, tfFileId } = registered;
  metrics.tfsRegistered.inc({ created: 'true' });
  await broadcaster.publish(
    tfFileRegistered({
      ...d.record,
      processedBy: deps.processedBy(),
      runId: d.runId,
      executionId: d.executionId,
      tfFileId,
      status: 'registered',
    }),
  );
  metrics.broadcasts.inc({ msg_type: 'tf_file_registered', result: 'ok' });
}
