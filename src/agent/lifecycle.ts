// The built agent's life: start() connects and subscribes, stop() drains and closes the parts in order.

import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import type { Config } from '../config/load.js';
import { FastmonError, messageOf } from '../errors.js';
import type { BrokerInput } from '../inputs/broker.js';
import type { MessageIntake } from '../inputs/messages.js';
import type { Logger } from '../log/logger.js';
import type { MonitorLogShipper } from '../log/monitor-logs.js';
import type { FrameFilterLimits } from '../messaging/frame-filter.js';
import type { StompConnection } from '../messaging/stomp.js';
import type { MonitorClient } from '../monitor/client.js';
import type { Health, OpsServer } from '../ops/http.js';
import type { Metrics } from '../ops/metrics.js';
import type { RunCounts } from '../run/counts.js';
import type { RunStates } from '../run/run-states.js';
import type { StfExecutor } from '../scheduler/pool.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { DeferredSamples } from '../sinks/deferred-samples.js';
import type { Registrar } from '../sinks/registrar.js';
import type { Store } from '../store/store.js';
import type { Heartbeats } from './heartbeat.js';
import type { RunEnds } from './run-end.js';
import type { RunSummaries } from './run-summaries.js';

export interface AgentOptions {
  config: Config;
  logger: Logger;
  /** Where notifications go when there is no broker (default process.stdout). */
  stdout?: Writable;
  /** How a notification is written there (default: one JSON object per line). */
  formatNotification?: (message: Record<string, unknown>) => string;
  /** Consume from the broker subscription (default true); false for replay, scan and watch. */
  consume?: boolean;
  /** What feeds the agent, for its start-up line: 'broker' (default when consuming), 'replay', 'scan', 'watch'. */
  input?: 'broker' | 'replay' | 'scan' | 'watch';
  /** Run STF tasks on the main thread instead of the pool; overrides `agent.inline`. */
  inline?: boolean;
  /**
   * Open the /metrics port (default true: the agent command). scan and watch pass false: they open
   * one only when agent.http_port is set explicitly, so they never take a running agent's port.
   */
  metricsPort?: boolean;
  /** The logger's AppLog shipper (createLogger's `ship`): named once the agent has its name, closed last. */
  logShipper?: MonitorLogShipper;
  /** What inbound frames are cut down to (default FRAME_LIMITS, src/messaging/limits.ts). */
  frameLimits?: FrameFilterLimits;
}

/**
 * The agent's parts, all built. A part is null only where the configuration leaves it out (no
 * broker, no swf-monitor, no port, no outbox with the local catalog, no subscription when not
 * consuming), never because it is not built yet.
 */
export interface AgentParts {
  options: AgentOptions;
  name: string;
  metrics: Metrics;
  runs: RunStates;
  life: Life;
  ops: OpsServer | null;
  store: Store;
  registrar: Registrar;
  broker: StompConnection | null;
  monitor: MonitorClient | null;
  deferred: DeferredSamples | null;
  executor: StfExecutor;
  scheduler: Scheduler;
  heartbeats: Heartbeats | null;
  summaries: RunSummaries;
  runEnds: RunEnds;
  messages: MessageIntake;
  brokerInput: BrokerInput | null;
}

/** What /healthz answers. */
export interface AgentHealth extends Health {
  agent: string;
  broker: 'none' | 'connected' | 'disconnected';
  registrar: Registrar['kind'] | null;
  stopping: boolean;
  inFlight: number;
  queued: number;
  uptimeS: number;
}

/** What changes in the agent's life: when it started, and whether it is stopping. */
export interface Life {
  readonly startedAt: Date;
  stopping: boolean;
}

/**
 * Builds the agent, finished: store, swf-monitor identity, registrar, broker connection (not
 * started), outbox, pool, scheduler, heartbeats, run summaries and ends, and the inputs' intake.
 * `signal` aborts a build still waiting for swf-monitor (a stop signal during start-up). On any
 * failure what was opened so far is closed again.
 */

/** A built agent: start() connects and subscribes, stop() drains and closes, in order. */
export class Agent {
  constructor(private readonly parts: AgentParts) {}

  get agentName(): string {
    return this.parts.name;
  }

  get metrics(): Metrics {
    return this.parts.metrics;
  }

  get runs(): RunStates {
    return this.parts.runs;
  }

  /** The one way into the pipeline, for the inputs (scan and watch submit STFs found on disk). */
  get scheduler(): Scheduler {
    return this.parts.scheduler;
  }

  /** Where message bodies go, for the inputs that read them (replay). */
  get messages(): MessageIntake {
    return this.parts.messages;
  }

  get httpPort(): number | null {
    return this.parts.ops?.port ?? null;
  }

  get totals(): RunCounts {
    return this.parts.scheduler.totals;
  }

  /** STFs in flight or waiting for a slot. */
  get busy(): number {
    return this.parts.scheduler.inFlight + this.parts.scheduler.queued;
  }

  /** One message body, handled as if from the broker without redelivery (replay, the bench). */
  async handleMessage(body: string, messageId = ''): Promise<void> {
    await this.parts.messages.handleMessage(body, messageId);
  }

  /**
   * Connects and subscribes when consuming; starts heartbeats and run summaries. `signal` ends the
   * wait for a broker that does not answer.
   */
  async start(signal?: AbortSignal): Promise<void> {
    const { options, broker, brokerInput, monitor, registrar, name } = this.parts;
    const { config, logger } = options;
    const inline = options.inline ?? config.agent.inline;
    logger.info(
      {
        agent: name,
        namespace: config.agent.namespace || null,
        input: options.input ?? (options.consume === false ? 'none' : 'broker'),
        workers: inline ? 0 : config.agent.workers,
        registrar: registrar.kind,
        broker: config.broker.host ? `${config.broker.host}:${config.broker.port}` : null,
        metricsPort: this.httpPort,
      },
      'fastmon agent starting',
    );
    if (broker) {
      broker.start();
      brokerInput?.subscribe();
      const waiting = broker.waitConnected(Math.max(config.broker.reconnectMaxMs, 15_000)).then(
        () => true,
        (err: Error) => {
          // Not fatal: the connection keeps retrying in the background.
          logger.error({ code: 'BROKER_UNAVAILABLE' }, `${err.message}; still trying`);
          return false;
        },
      );
      // A stop signal ends the wait for a broker that does not answer (start-up must not swallow it).
      const connected = signal ? await Promise.race([waiting, shutdownOn(signal)]) : await waiting;
      // Started means listening: stf_ready sent to a topic before the broker has the subscription is lost.
      if (connected && brokerInput && !(await broker.waitSubscribed(10_000))) {
        logger.warn(
          { destination: config.broker.subscription },
          'subscription not confirmed by the broker yet',
        );
      }
    }
    if (monitor && brokerInput) {
      await monitor
        .registerSubscriber(
          `${name}-${config.broker.subscription}`,
          `fastmon agent on ${config.broker.subscription}`,
        )
        .catch((err) => logger.warn({ err: { message: messageOf(err) } }, 'subscriber registration failed'));
    }
    this.parts.heartbeats?.start();
    this.parts.summaries.start();
  }

  /** Waits for all accepted work (for replay's end and shutdown). */
  async idle(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const drained = await this.parts.scheduler.drain(timeoutMs);
    await this.parts.messages.idle();
    return drained;
  }

  /**
   * Stop consuming, finish in-flight work within the drain timeout, send the EXITED heartbeat,
   * disconnect. Safe to call more than once.
   */
  async stop(reason: string): Promise<void> {
    const p = this.parts;
    if (p.life.stopping) return;
    p.life.stopping = true;
    const { logger, config } = p.options;
    logger.info(
      { reason, inFlight: p.scheduler.inFlight },
      'stopping: no new messages, draining in-flight work',
    );
    p.brokerInput?.stopTaking();
    // Runs waiting for their last STFs end now with what has arrived.
    p.runEnds.stop();
    if (!(await this.idle(config.agent.drainTimeoutS * 1000)))
      logger.warn(
        { timeoutS: config.agent.drainTimeoutS },
        'drain timeout reached; unfinished STFs are neither acknowledged nor recorded in the ledger, so they are handled again',
      );
    await p.summaries.stop();
    p.brokerInput?.unsubscribe();
    await p.deferred?.close();
    await p.heartbeats?.exit();
    await p.broker?.close();
    await p.executor.close();
    await p.registrar.close();
    await p.store.release();
    await p.ops?.close();
    logger.info({ agent: p.name }, 'stopped');
    // Last: the records of the shutdown itself go too, for at most 2 s.
    await p.options.logShipper?.close(2000);
  }

  /** Where this agent's /metrics answers (the heartbeat's agent_url). */
  metricsUrl(): string | null {
    return metricsUrl(this.parts.options.config, this.parts.ops);
  }

  health(): AgentHealth {
    const { broker, registrar, life, scheduler } = this.parts;
    const brokerOk = broker === null || broker.connected;
    return {
      ok: brokerOk && !life.stopping,
      agent: this.parts.name,
      broker: broker === null ? 'none' : broker.connected ? 'connected' : 'disconnected',
      registrar: registrar.kind,
      stopping: life.stopping,
      inFlight: scheduler.inFlight,
      queued: scheduler.queued,
      uptimeS: Math.round((Date.now() - life.startedAt.getTime()) / 1000),
    };
  }
}

/**
 * Where the agent's /metrics answers, as the heartbeat's agent_url: with several agents on a
 * host, the port tells them apart. A wildcard address is named by the host name.
 */
export function metricsUrl(config: Config, ops: OpsServer | null): string | null {
  if (!ops) return null;
  const host = config.agent.httpHost;
  const shown = host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host;
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${ops.port}/metrics`;
}

/** Rejects with SHUTDOWN once `signal` is aborted; never resolves. */
function shutdownOn(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const stop = () => reject(new FastmonError('SHUTDOWN', 'stopped during start-up'));
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
  });
}
