// The broker subscription as an input: subscribe, deliver at least once, retry what a later attempt can cure, reissue.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/load.js';
import { isRetryable, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { isOwnBroadcast, OWN_TYPES } from '../messaging/codec.js';
import type { InboundMessage, StompConnection } from '../messaging/stomp.js';
import { planSubscriptions, type Role } from '../messaging/subscriptions.js';
import type { Metrics } from '../ops/metrics.js';
import type { Scheduler, StfResult } from '../scheduler/scheduler.js';
import type { MessageIntake } from './messages.js';
import { REISSUE_HEADER, reissueHeaders } from './reissue.js';

/** What becomes of a broker message once handled: acknowledged, or handled again later. */
export type Verdict = 'ack' | 'retry';

/** swf-monitor refusals (an STF it does not know yet: the Rucio data agents announce before registering). */
const REJECTED_ATTEMPTS = 5;

/**
 * An STF is done when every sample is registered (or safely in the outbox) and broadcast, or when
 * it failed for a reason redelivery cannot cure (a corrupt file, a path outside the roots). A
 * refusal by swf-monitor is retried a few times, then acknowledged with the error logged.
 */
export function verdictOf(result: StfResult, attempt: number): Verdict {
  const codes = result.outcome === 'failed' ? [result.error?.code ?? ''] : (result.failureCodes ?? []);
  if (codes.some(isRetryable)) return 'retry';
  if (codes.includes('MONITOR_REJECTED') && attempt + 1 < REJECTED_ATTEMPTS) return 'retry';
  return 'ack';
}

export interface BrokerInputDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  broker: StompConnection;
  messages: MessageIntake;
  scheduler: Scheduler;
}

/**
 * At-least-once: a message is acknowledged only once handled (samples registered or in the
 * outbox, and broadcast). A passing failure is retried here, with backoff, rather than NACKed:
 * ActiveMQ Classic takes a STOMP NACK as a poison acknowledgement and drops the message (or
 * dead-letters it), which is the opposite of a retry. When the agent stops or the connection
 * drops first, the message stays unacknowledged and the broker hands it out again.
 */
export class BrokerInput {
  private stops: (() => void)[] = [];
  private stopping = false;

  constructor(private readonly deps: BrokerInputDeps) {}

  subscribe(): void {
    const { config, logger, broker } = this.deps;
    const b = config.broker;
    // At least max_in_flight messages must be able to reach the agent, or max_in_flight means nothing.
    const window = {
      messages: Math.max(b.prefetch, config.agent.maxInFlight),
      messageBytes: config.agent.maxMessageBytes,
    };
    for (const planned of planSubscriptions(b.subscription, b.durableSubscription)) {
      const headers: Record<string, string> = {};
      if (b.skipOwnBroadcasts && planned.selector) {
        // Our broadcasts carry a msg_type header; other producers send none (BaseAgent sets no headers).
        headers.selector = `msg_type IS NULL OR msg_type NOT IN (${OWN_TYPES.map((t) => `'${t}'`).join(', ')})`;
      }
      if (planned.durableName) {
        // ActiveMQ Classic reads the first, Artemis the second (and accepts the first too).
        headers['activemq.subscriptionName'] = planned.durableName;
        headers['durable-subscription-name'] = planned.durableName;
      }
      const spec = { destination: planned.destination, ack: b.ack, headers, window };
      this.stops.push(broker.subscribe(spec, (message) => void this.deliver(message, planned.role)));
      logger.info(
        {
          destination: planned.destination,
          role: planned.role,
          ack: b.ack,
          durable: planned.durableName || null,
        },
        'subscribed',
      );
    }
  }

  /**
   * No new messages from now on. The subscription stays until the drain is over: messages in hand
   * are acknowledged on it (an ACK after UNSUBSCRIBE is lost, and the broker would hand them out
   * again); new ones are left unacknowledged and go to the next consumer.
   */
  stopTaking(): void {
    this.stopping = true;
  }

  unsubscribe(): void {
    for (const stop of this.stops) stop();
    this.stops = [];
  }

  private async deliver(message: InboundMessage, role: Role): Promise<void> {
    if (this.stopping) return;
    if (isOwnBroadcast(message.headers.msg_type)) {
      // Reaches the agent on a shared queue (no selector there) or with skip_own_broadcasts off:
      // taken off the queue unread.
      message.ack();
      return;
    }
    if (message.refusal) {
      // Over a frame limit: this message alone is refused; the connection stays up. Beside a shared
      // queue, the lifecycle subscription leaves the refusal to the queue's consumer (refused once).
      if (role === 'lifecycle') {
        message.ack();
        return;
      }
      const { code, reason } = message.refusal;
      await this.deps.messages.refuse(message.body, message.messageId, code, reason, {
        headers: headerNames(message),
      });
      message.ack();
      return;
    }
    if (await this.reissued(message, role)) return;
    // Counts are per delivery: the last attempt's outcome is what this delivery counts as.
    let last: StfResult | undefined;
    let late = false;
    try {
      await this.deliverAttempts(message, role, (stf) => {
        last = stf;
        late ||= stf.late === true; // only the first attempt sees a late STF as new
      });
    } finally {
      if (last) {
        this.deps.scheduler.settled(last);
        if (late) this.deps.messages.followUp(last);
      }
    }
  }

  private async deliverAttempts(
    message: InboundMessage,
    role: Role,
    attempted: (stf: StfResult) => void,
  ): Promise<void> {
    let previous: StfResult | undefined;
    for (let attempt = 0; ; attempt++) {
      // The retry's outcome replaces the previous attempt's in the counts.
      if (previous) this.deps.scheduler.revert(previous);
      const stf = await this.deps.messages.handle(message.body, message.messageId, true, role);
      if (stf) {
        attempted(stf);
        previous = stf;
      }
      if (!stf || verdictOf(stf, attempt) === 'ack') {
        message.ack();
        return;
      }
      if (this.stopping || !message.isLive()) return;
      const waitMs = Math.min(30_000, 500 * 2 ** attempt);
      this.deps.logger.warn(
        { msgId: message.messageId, attempt: attempt + 1, retryInMs: waitMs },
        'message not fully handled; retrying',
      );
      await sleep(waitMs);
      if (this.stopping || !message.isLive()) return;
    }
  }

  /** See reissue.ts: a redelivered message from a shared Artemis queue goes back on it as a new one. */
  private async reissued(message: InboundMessage, role: Role): Promise<boolean> {
    const { broker, config, logger, metrics } = this.deps;
    const destination = config.broker.subscription;
    const headers = reissueHeaders(broker.brokerKind, role, destination, message.headers);
    if (!headers) return false;
    try {
      await broker.publish(destination, message.body, headers);
    } catch (err) {
      // Handled as it is, then: the broker's count goes on.
      logger.warn(
        { msgId: message.messageId, err: { message: messageOf(err) } },
        'redelivered message not reissued',
      );
      return false;
    }
    message.ack();
    metrics.messagesReissued.inc();
    logger.info(
      { msgId: message.messageId, reissues: headers[REISSUE_HEADER] },
      'redelivered message put back on its queue as a new one',
    );
    return true;
  }
}

/** How many headers a refused frame kept, and a few of their names, for the log line. */
function headerNames(message: InboundMessage): { count: number; first: string[] } {
  const names = Object.keys(message.headers);
  return { count: names.length, first: names.slice(0, 8).map((n) => n.slice(0, 64)) };
}
