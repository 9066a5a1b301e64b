// A message body from the broker or a replay file: refused (dead letter), or an stf_ready for the scheduler, or a run's lifecycle.

import type { Config } from '../config/load.js';
import { type FastmonError, isFastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { decodeMessage, type Incoming, isLifecycle, type RunLifecycle } from '../messaging/codec.js';
import type { StompConnection } from '../messaging/stomp.js';
import type { Role } from '../messaging/subscriptions.js';
import type { Metrics } from '../ops/metrics.js';
import type { RunInfo, RunStates } from '../run/run-states.js';
import type { Scheduler, StfResult } from '../scheduler/scheduler.js';

/** The run ends the messages start (run-end.ts): the end_run wait and the follow-up status of a late STF. */
export interface RunEnding {
  close(run: RunInfo): Promise<void>;
  followUp(run: RunInfo): Promise<void>;
}

export interface MessageIntakeDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  runs: RunStates;
  scheduler: Scheduler;
  runEnds: RunEnding;
  /** Where dead letters go (broker.dead_letter); null without a broker. */
  broker: StompConnection | null;
  processedBy: () => string;
  /** Called once an stf_ready is handled (the heartbeat's operational state may have changed). */
  onStfHandled?: () => void;
}

/**
 * Every message source goes through here: the size bound and the codec, the namespace rule, then
 * an stf_ready to the scheduler (the one way in for an STF announced by message) or a lifecycle
 * message to the run states. Bad input is logged, counted and dead-lettered, never thrown.
 */
export class MessageIntake {
  /** Lifecycle handling under way (an end_run waiting for its STFs), awaited by idle(). */
  private readonly lifecycleWork = new Set<Promise<void>>();

  constructor(private readonly deps: MessageIntakeDeps) {}

  /**
   * One message body from a source without redelivery (replay). Resolves when the message is
   * fully handled (for an stf_ready: sampled, registered and broadcast).
   */
  async handleMessage(body: string, messageId = ''): Promise<StfResult | undefined> {
    const stf = await this.handle(body, messageId, false, 'all');
    if (stf?.late) this.followUp(stf);
    return stf;
  }

  /**
   * The handling of one body; the STF's outcome when it was an stf_ready. `retryable`: the caller
   * may handle the message again, and then takes the superseded attempt's counts back (see
   * Scheduler.revert), so that the delivery counts once. `role`: which messages the subscription it
   * came on is for (subscriptions.ts).
   */
  async handle(
    body: string,
    messageId: string,
    retryable: boolean,
    role: Role,
  ): Promise<StfResult | undefined> {
    const { logger, metrics, config } = this.deps;
    const bytes = Buffer.byteLength(body, 'utf8');
    // The lifecycle subscription beside a shared queue sees every message the queue sees: the
    // queue's consumer refuses the bad ones (role 'lifecycle' acknowledges them unsaid), and takes the stf_ready.
    if (bytes > config.agent.maxMessageBytes) {
      if (role === 'lifecycle') return undefined;
      const reason = `larger than ${config.agent.maxMessageBytes} bytes (${bytes})`;
      await this.refuse(body, messageId, 'MESSAGE_TOO_LARGE', reason, { bytes });
      return undefined;
    }
    let message: Incoming;
    try {
      message = decodeMessage(body);
    } catch (err) {
      if (role === 'lifecycle') return undefined;
      const code = isFastmonError(err) ? err.code : 'MESSAGE_INVALID';
      await this.refuse(body, messageId, code, messageOf(err), (err as FastmonError).details);
      return undefined;
    }
    if (role === 'lifecycle' ? !isLifecycle(message.msgType) : role === 'stf' && isLifecycle(message.msgType))
      return undefined; // the other subscription's share
    metrics.messages.inc({ msg_type: message.msgType });
    // BaseAgent's rule: drop only when both sides have a namespace and they differ.
    const ours = config.agent.namespace;
    if (ours && message.namespace && message.namespace !== ours) {
      metrics.messagesOtherNamespace.inc();
      logger.debug(
        { msgId: messageId, namespace: message.namespace, msgType: message.msgType },
        'message of another namespace ignored',
      );
      return undefined;
    }
    if ('ignored' in message) return undefined;
    if (message.msgType === 'stf_ready') {
      const result = await this.deps.scheduler.submit(message, messageId, { retryable });
      this.deps.onStfHandled?.();
      return result;
    }
    const work = this.onLifecycle(message, messageId);
    this.lifecycleWork.add(work);
    try {
      await work;
    } finally {
      this.lifecycleWork.delete(work);
    }
    return undefined;
  }

  /**
   * A poison message: logged and counted with the reason, sent to the dead-letter destination when
   * there is one, and acknowledged by the caller, so it never stalls the stream nor comes back.
   */
  async refuse(
    body: string,
    messageId: string,
    code: string,
    reason: string,
    details: unknown,
  ): Promise<void> {
    const { logger, metrics, config, broker } = this.deps;
    metrics.messagesRejected.inc({ code });
    logger.error({ code, msgId: messageId, details }, `message refused: ${reason}`);
    const deadLetter = config.broker.deadLetter;
    if (!deadLetter || !broker) return;
    // The body is kept as text: it may not be JSON at all.
    const envelope = {
      msg_type: 'fastmon_dead_letter',
      processed_by: this.deps.processedBy(),
      code,
      reason,
      message_id: messageId,
      body: body.length > 65536 ? `${body.slice(0, 65536)}…` : body,
      timestamp: new Date().toISOString(),
    };
    await broker
      // Persistent: a dead letter is the only trace of a refused message, and must survive a broker restart.
      .publish(deadLetter, JSON.stringify(envelope), {
        msg_type: 'fastmon_dead_letter',
        reason_code: code,
        persistent: 'true',
      })
      .catch((err) => logger.error({ code: 'PUBLISH_FAILED' }, `dead letter not sent: ${messageOf(err)}`));
  }

  /** An STF that arrived after its run's final status: a follow-up status says so. */
  followUp(result: StfResult): void {
    const run = result.runId ? this.deps.runs.get(result.runId) : undefined;
    if (!run) return;
    this.track(this.deps.runEnds.followUp(run));
  }

  /** Waits for the lifecycle work under way (end_run waits, follow-ups). */
  async idle(): Promise<void> {
    while (this.lifecycleWork.size > 0) await Promise.all(this.lifecycleWork);
  }

  private async onLifecycle(message: RunLifecycle, messageId: string): Promise<void> {
    const run = this.deps.runs.apply(message);
    const log = this.deps.logger.child({ run: message.runId, msgId: messageId });
    if (!run) {
      if (message.runId)
        log.warn(
          { msgType: message.msgType },
          'lifecycle message of an untracked run (agent.max_runs reached)',
        );
      else log.warn({ msgType: message.msgType }, 'lifecycle message without run_id ignored');
      return;
    }
    log.info(
      { msgType: message.msgType, state: run.state, substate: run.substate, execution: run.executionId },
      'run state',
    );
    if (message.msgType !== 'end_run') return;
    if (run.finalSent) {
      log.info('end_run for a run already ended: its final status is out');
      return;
    }
    // The run's end waits for its last STFs (bounded by the grace) in the background: the end_run
    // is acknowledged now, so it never holds a broker window those STFs need to come through.
    this.track(this.deps.runEnds.close(run));
  }

  private track(work: Promise<void>): void {
    this.lifecycleWork.add(work);
    void work.finally(() => this.lifecycleWork.delete(work));
  }
}
