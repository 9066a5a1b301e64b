// The agent: composes configuration, messaging, run state, the scheduler, sinks, heartbeats and ops.

import { hostname } from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import type { Config } from '../config/load.js';
import { osUser } from '../config/os-user.js';
import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import { REISSUE_HEADER, reissueHeaders } from '../inputs/reissue.js';
import type { Logger } from '../log/logger.js';
import type { MonitorLogShipper } from '../log/monitor-logs.js';
import {
  decodeMessage,
  type Incoming,
  isLifecycle,
  isOwnBroadcast,
  OWN_TYPES,
  type RunCounts,
  type RunLifecycle,
  runFromFilename,
  type StfReady,
} from '../messaging/codec.js';
import type { FrameFilterLimits } from '../messaging/frame-filter.js';
import { type InboundMessage, StompConnection } from '../messaging/stomp.js';
import { planSubscriptions, type Role } from '../messaging/subscriptions.js';
import { MonitorClient } from '../monitor/client.js';
import { MonitorHttp } from '../monitor/http.js';
import { type OpsServer, startOpsServerNear } from '../ops/http.js';
import { createMetrics, type Metrics } from '../ops/metrics.js';
import { emptyCounts, RunStates } from '../run/run-states.js';
import { createInlineExecutor, createPool, type StfExecutor } from '../scheduler/pool.js';
import { Scheduler, type StfResult } from '../scheduler/scheduler.js';
import { type Broadcaster, StompBroadcaster, StreamBroadcaster } from '../sinks/broadcast.js';
import { CatalogRegistrar } from '../sinks/catalog.js';
import { DbRegistrar } from '../sinks/db-registrar.js';
import { DeferredSamples } from '../sinks/deferred-samples.js';
import { MonitorRegistrar, type Registrar } from '../sinks/registrar.js';
import { storeOptions } from '../store/paths.js';
import { Store } from '../store/store.js';
import { Heartbeats, type OperationalState } from './heartbeat.js';
import { RunEnds } from './run-end.js';
import { RunSummaries } from './run-summaries.js';

/** What becomes of a broker message once handled: acknowledged, or handled again later. */
export type Verdict = 'ack' | 'retry';

/** Failures that a later attempt can cure: the monitor, the broker, the outbox's disk, a worker. */
const TRANSIENT = /^(MONITOR_UNAVAILABLE|PUBLISH_|WORKER_|OUTBOX_|CATALOG_WRITE)/;
/** swf-monitor refusals (an STF it does not know yet: the Rucio data agents announce before registering). */
const REJECTED_ATTEMPTS = 5;

/**
 * An STF is done when every sample is registered (or safely in the outbox) and broadcast, or when
 * it failed for a reason redelivery cannot cure (a corrupt file, a path outside the roots). A
 * refusal by swf-monitor is retried a few times, then acknowledged with the error logged.
 */
function verdictOf(result: StfResult, attempt: number): Verdict {
  const codes = result.outcome === 'failed' ? [result.error?.code ?? ''] : (result.failureCodes ?? []);
  if (codes.some((c) => TRANSIENT.test(c))) return 'retry';
  if (codes.includes('MONITOR_REJECTED') && attempt + 1 < REJECTED_ATTEMPTS) return 'retry';
  return 'ack';
}

export interface AgentOptions {
  config: Config;
  logger: Logger;
  /** Where notifications go when there is no broker (default process.stdout). */
  stdout?: Writable;
  /** How a notification is written there (default: one JSON object per line). */
  formatNotification?: (message: Record<string, unknown>) => string;
  /** Consume from the broker subscription (default true); false for replay. */
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

export class Agent {
  readonly metrics: Metrics = createMetrics();
  readonly runs: RunStates;
  private name = '';
  private get inline(): boolean {
    return this.options.inline ?? this.options.config.agent.inline;
  }
  private broker: StompConnection | null = null;
  private monitor: MonitorClient | null = null;
  private registrar: Registrar | null = null;
  /** The local store: the catalog without swf-monitor, the outbox with it, the ledger of scan and watch. */
  private store: Store | null = null;
  private deferred: DeferredSamples | null = null;
  private summaries: RunSummaries | null = null;
  private runEnds: RunEnds | null = null;
  private executor: StfExecutor | null = null;
  private scheduler: Scheduler | null = null;
  private heartbeats: Heartbeats | null = null;
  private ops: OpsServer | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly lifecycleWork = new Set<Promise<void>>();
  private stopping = false;
  private readonly startedAt = new Date();
  private readonly config: Config;
  private readonly logger: Logger;

  constructor(private readonly options: AgentOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.runs = new RunStates({
      maxRuns: this.config.agent.maxRuns,
      idleTimeoutMs: this.config.agent.runIdleTimeoutS * 1000,
      onRefused: (runId) => {
        this.metrics.runsRefused.inc();
        // Once per refused id would be a log line per STF: the first one of each hundred says it.
        if (this.runs.refused % 100 === 1)
          this.logger.warn(
            { run: runId, maxRuns: this.config.agent.maxRuns, refused: this.runs.refused },
            'too many runs tracked at once: this run gets no per-run counts or summaries',
          );
      },
    });
  }

  get agentName(): string {
    return this.name;
  }

  get httpPort(): number | null {
    return this.ops?.port ?? null;
  }

  get totals(): RunCounts {
    return this.scheduler?.totals ?? emptyCounts();
  }

  /**
   * Sets everything up; in message mode also connects and subscribes. `signal` aborts a start
   * still waiting for swf-monitor (a stop signal during start-up).
   */
  async start(signal?: AbortSignal): Promise<void> {
    const { config, logger } = this;
    const wantPort = this.options.metricsPort !== false || config.agent.httpPortSet;
    if (config.agent.httpPort >= 0 && wantPort) {
      try {
        this.ops = await startOpsServerNear(
          config.agent.httpHost,
          config.agent.httpPort,
          config.agent.httpPortSet,
          this.metrics.registry,
          () => this.health(),
        );
        logger.info(
          { url: this.metricsUrl(), port: this.ops.port, requested: config.agent.httpPort },
          this.ops.port === config.agent.httpPort
            ? 'metrics and health endpoint up'
            : `metrics and health endpoint up on port ${this.ops.port} (${config.agent.httpPort} is taken)`,
        );
      } catch (err) {
        logger.error(
          { code: 'METRICS_PORT_IN_USE', err: { message: messageOf(err) } },
          'cannot open the /healthz and /metrics port; carrying on without it',
        );
      }
    }
    this.store = await Store.acquire(storeOptions(config, logger));
    if (config.monitor.url) {
      const http = new MonitorHttp({
        ...config.monitor,
        logger,
        observe: (method, endpoint, status, seconds) =>
          this.metrics.monitorRequests.observe({ method, endpoint, status }, seconds),
      });
      this.monitor = new MonitorClient(http);
      this.name = `fastmon-agent-${osUser()}-${await this.agentId(this.monitor, signal)}`;
      if (!config.monitorDb.url) this.registrar = new MonitorRegistrar(this.monitor, logger);
    } else {
      this.name = `fastmon-agent-${osUser()}-local-${process.pid}`;
      if (!config.monitorDb.url) {
        this.registrar = new CatalogRegistrar(this.store, logger);
        logger.info({ catalog: this.store.file }, 'no SWF_MONITOR_URL: registering into the local catalog');
      }
    }
    // SWF_MONITOR_DB_URL: rows straight into swf-monitor's tables; identity, heartbeats stay on REST.
    this.registrar ??= await DbRegistrar.open(
      {
        ...config.monitorDb,
        logger,
        observe: (table, _rows, seconds, ok) =>
          this.metrics.monitorRequests.observe(
            { method: 'SQL', endpoint: table, status: ok ? 'ok' : 'error' },
            seconds,
          ),
      },
      signal,
    ).catch(async (err: unknown) => {
      // Refused (tables changed, wrong password) or stopped: close what start() opened so far.
      await this.ops?.close();
      await this.monitor?.http.close();
      await this.store?.release();
      this.store = null;
      throw err;
    });
    this.options.logShipper?.bind(this.name, (result, n) => this.metrics.logRecords.inc({ result }, n));
    const identity = { sender: this.name, namespace: config.agent.namespace || null };
    let broadcaster: Broadcaster;
    if (config.broker.host) {
      this.broker = new StompConnection({
        host: config.broker.host,
        port: config.broker.port,
        user: config.broker.user,
        password: config.broker.password,
        useSsl: config.broker.useSsl,
        caFile: config.broker.sslCaCerts,
        heartbeatMs: config.broker.heartbeatMs,
        clientId: config.broker.clientId || this.name,
        reconnectMaxMs: config.broker.reconnectMaxMs,
        maxBodyBytes: config.agent.maxMessageBytes,
        frameLimits: this.options.frameLimits,
        logger,
      });
      this.broker.on('connected', (first: boolean) => {
        this.metrics.brokerConnected.set(1);
        if (!first) this.metrics.reconnects.inc();
        this.heartbeats?.changed();
      });
      this.broker.on('disconnected', () => {
        this.metrics.brokerConnected.set(0);
        this.heartbeats?.changed();
      });
      broadcaster = new StompBroadcaster(
        this.broker,
        config.broker.broadcast,
        identity,
        config.broker.persistent,
      );
    } else {
      broadcaster = new StreamBroadcaster(
        this.options.stdout ?? process.stdout,
        identity,
        this.options.formatNotification,
      );
      logger.info('no ACTIVEMQ_HOST: notifications are printed to stdout');
    }
    if (this.registrar.kind !== 'catalog') {
      this.deferred = await DeferredSamples.open({
        config,
        store: this.store,
        logger,
        metrics: this.metrics,
        registrar: this.registrar,
        broadcaster,
        processedBy: () => this.name,
        onChange: () => this.heartbeats?.changed(),
      });
    }
    this.executor = this.inline ? createInlineExecutor() : createPool({ workers: config.agent.workers });
    this.scheduler = new Scheduler({
      executor: this.executor,
      registrar: this.registrar,
      broadcaster,
      runs: this.runs,
      sampling: config.sampling,
      dataRoots: config.agent.dataRoots,
      outputDir: config.agent.outputDir || null,
      stfChecksum: config.agent.stfChecksum,
      maxInFlight: config.agent.maxInFlight,
      processedBy: () => this.name,
      defer: this.deferred ? (sample) => (this.deferred as DeferredSamples).defer(sample) : undefined,
      logger,
      metrics: this.metrics,
    });
    if (this.monitor) {
      this.heartbeats = new Heartbeats(
        this.monitor,
        {
          name: () => this.name,
          namespace: identity.namespace,
          mqConnected: () => this.broker?.connected ?? false,
          usesBroker: this.broker !== null,
          operationalState: () => this.operationalState(),
          summary: () => this.describe(),
          agentUrl: () => this.metricsUrl(),
        },
        config.monitor.heartbeatIntervalS * 1000,
        logger,
      );
    }
    logger.info(
      {
        agent: this.name,
        namespace: identity.namespace,
        input: this.options.input ?? (this.options.consume === false ? 'none' : 'broker'),
        workers: this.inline ? 0 : config.agent.workers,
        registrar: this.registrar.kind,
        broker: config.broker.host ? `${config.broker.host}:${config.broker.port}` : null,
        metricsPort: this.ops?.port ?? null,
      },
      'fastmon agent starting',
    );
    if (this.broker) {
      this.broker.start();
      if (this.options.consume !== false) this.subscribe(this.broker);
      const waiting = this.broker.waitConnected(Math.max(config.broker.reconnectMaxMs, 15_000)).then(
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
      if (connected && this.options.consume !== false && !(await this.broker.waitSubscribed(10_000))) {
        logger.warn(
          { destination: config.broker.subscription },
          'subscription not confirmed by the broker yet',
        );
      }
    }
    if (this.monitor && this.broker && this.options.consume !== false) {
      await this.monitor
        .registerSubscriber(
          `${this.name}-${config.broker.subscription}`,
          `fastmon agent on ${config.broker.subscription}`,
        )
        .catch((err) => logger.warn({ err: { message: messageOf(err) } }, 'subscriber registration failed'));
    }
    this.heartbeats?.start();
    this.summaries = new RunSummaries({
      runs: this.runs,
      broadcaster,
      processedBy: () => this.name,
      outboxDepth: () => this.deferred?.depth ?? null,
      intervalS: config.agent.summaryIntervalS,
      idleTimeoutS: config.agent.runIdleTimeoutS,
      logger,
      metrics: this.metrics,
    });
    this.summaries.start();
    this.runEnds = new RunEnds({
      runs: this.runs,
      settleRun: (runId) => this.requireScheduler().settleRun(runId),
      broadcaster,
      summaries: () => this.summaries,
      processedBy: () => this.name,
      graceS: config.agent.endRunGraceS,
      logger,
      metrics: this.metrics,
    });
  }

  /**
   * One message body from any source. Resolves when the message is fully handled (for an
   * stf_ready: sampled, registered and broadcast); never rejects: bad input is logged and counted.
   */
  async handleMessage(body: string, messageId = '', attempt = 0, role: Role = 'all'): Promise<Verdict> {
    const { verdict, stf } = await this.handle(body, messageId, attempt, false, role);
    if (stf?.late) this.followUp(stf);
    return verdict;
  }

  /**
   * handleMessage's body. `retryable`: deliver() may handle the message again; it then takes the
   * superseded attempt's counts back, so that the delivery counts once. `role`: which messages the
   * subscription it came on is for (subscriptions.ts).
   */
  private async handle(
    body: string,
    messageId: string,
    attempt: number,
    retryable: boolean,
    role: Role = 'all',
  ): Promise<{ verdict: Verdict; stf?: StfResult }> {
    const { logger, metrics, config } = this;
    const bytes = Buffer.byteLength(body, 'utf8');
    // The lifecycle subscription beside a shared queue sees every message the queue sees: the
    // queue's consumer refuses the bad ones (role 'lifecycle' acknowledges them unsaid), and takes the stf_ready.
    if (bytes > config.agent.maxMessageBytes) {
      if (role === 'lifecycle') return { verdict: 'ack' };
      const reason = `larger than ${config.agent.maxMessageBytes} bytes (${bytes})`;
      return { verdict: await this.refuse(body, messageId, 'MESSAGE_TOO_LARGE', reason, { bytes }) };
    }
    let message: Incoming;
    try {
      message = decodeMessage(body);
    } catch (err) {
      if (role === 'lifecycle') return { verdict: 'ack' };
      const code = isFastmonError(err) ? err.code : 'MESSAGE_INVALID';
      return {
        verdict: await this.refuse(body, messageId, code, messageOf(err), (err as FastmonError).details),
      };
    }
    if (role === 'lifecycle' ? !isLifecycle(message.msgType) : role === 'stf' && isLifecycle(message.msgType))
      return { verdict: 'ack' }; // the other subscription's share
    metrics.messages.inc({ msg_type: message.msgType });
    // BaseAgent's rule: drop only when both sides have a namespace and they differ.
    const ours = config.agent.namespace;
    if (ours && message.namespace && message.namespace !== ours) {
      metrics.messagesOtherNamespace.inc();
      logger.debug(
        { msgId: messageId, namespace: message.namespace, msgType: message.msgType },
        'message of another namespace ignored',
      );
      return { verdict: 'ack' };
    }
    if ('ignored' in message) return { verdict: 'ack' };
    if (message.msgType === 'stf_ready') {
      const result = await this.requireScheduler().submit(message, messageId, { retryable });
      this.heartbeats?.changed();
      return { verdict: verdictOf(result, attempt), stf: result };
    }
    const work = this.onLifecycle(message, messageId);
    this.lifecycleWork.add(work);
    try {
      await work;
    } finally {
      this.lifecycleWork.delete(work);
    }
    return { verdict: 'ack' };
  }

  private followUp(result: StfResult): void {
    const run = result.runId ? this.runs.get(result.runId) : undefined;
    if (!run || !this.runEnds) return;
    this.track(this.runEnds.followUp(run));
  }

  /**
   * A poison message: logged and counted with the reason, sent to the dead-letter destination when
   * there is one, and acknowledged, so it never stalls the stream nor comes back.
   */
  private async refuse(
    body: string,
    messageId: string,
    code: string,
    reason: string,
    details: unknown,
  ): Promise<Verdict> {
    this.metrics.messagesRejected.inc({ code });
    this.logger.error({ code, msgId: messageId, details }, `message refused: ${reason}`);
    const deadLetter = this.config.broker.deadLetter;
    if (deadLetter && this.broker) {
      // The body is kept as text: it may not be JSON at all.
      const envelope = {
        msg_type: 'fastmon_dead_letter',
        processed_by: this.name,
        code,
        reason,
        message_id: messageId,
        body: body.length > 65536 ? `${body.slice(0, 65536)}…` : body,
        timestamp: new Date().toISOString(),
      };
      await this.broker
        // Persistent: a dead letter is the only trace of a refused message, and must survive a broker restart.
        .publish(deadLetter, JSON.stringify(envelope), {
          msg_type: 'fastmon_dead_letter',
          reason_code: code,
          persistent: 'true',
        })
        .catch((err) =>
          this.logger.error({ code: 'PUBLISH_FAILED' }, `dead letter not sent: ${messageOf(err)}`),
        );
    }
    return 'ack';
  }

  /**
   * An STF found on disk (scan, watch): nobody announced it, so the agent registers its Run and
   * StfFile in swf-monitor before the samples. Resolves when it is fully handled.
   */
  handleDiskStf(file: string): Promise<StfResult> {
    const name = path.basename(file);
    const stf: StfReady = {
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
    return this.requireScheduler().submit(stf, `file:${file}`, { registerStf: true });
  }

  /** STFs in flight or waiting for a slot, for sources that pace themselves (replay). */
  get busy(): number {
    const s = this.requireScheduler();
    return s.inFlight + s.queued;
  }

  /** Waits for all accepted work (for replay's end and shutdown). */
  async idle(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const drained = await this.requireScheduler().drain(timeoutMs);
    while (this.lifecycleWork.size > 0) await Promise.all(this.lifecycleWork);
    return drained;
  }

  /**
   * Stop consuming, finish in-flight work within the drain timeout, send the EXITED heartbeat,
   * disconnect. Safe to call more than once.
   */
  async stop(reason: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { logger, config } = this;
    logger.info(
      { reason, inFlight: this.scheduler?.inFlight ?? 0 },
      'stopping: no new messages, draining in-flight work',
    );
    // The subscription stays until the drain is over: messages in hand are acknowledged on it
    // (an ACK after UNSUBSCRIBE is lost, and the broker would hand them out again); new ones are
    // left unacknowledged (deliver() checks `stopping`) and go to the next consumer.
    // Runs waiting for their last STFs end now with what has arrived.
    this.runEnds?.stop();
    if (this.scheduler) {
      const drained = await this.idle(config.agent.drainTimeoutS * 1000);
      if (!drained)
        logger.warn(
          { timeoutS: config.agent.drainTimeoutS },
          'drain timeout reached; unfinished STFs are abandoned',
        );
    }
    await this.summaries?.stop();
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.deferred?.close();
    await this.heartbeats?.exit();
    await this.broker?.close();
    await this.executor?.close();
    await this.registrar?.close();
    await this.store?.release();
    await this.ops?.close();
    logger.info({ agent: this.name }, 'stopped');
    // Last: the records of the shutdown itself go too, for at most 2 s.
    await this.options.logShipper?.close(2000);
  }

  /**
   * Where this agent's /metrics answers, as the heartbeat's agent_url: with several agents on a
   * host, the port tells them apart. A wildcard address is named by the host name.
   */
  metricsUrl(): string | null {
    if (!this.ops) return null;
    const host = this.config.agent.httpHost;
    const shown = host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host;
    return `http://${shown.includes(':') ? `[${shown}]` : shown}:${this.ops.port}/metrics`;
  }

  health() {
    const brokerOk = this.broker === null || this.broker.connected;
    return {
      ok: brokerOk && !this.stopping,
      agent: this.name,
      broker: this.broker === null ? 'none' : this.broker.connected ? 'connected' : 'disconnected',
      registrar: this.registrar?.kind ?? null,
      stopping: this.stopping,
      inFlight: this.scheduler?.inFlight ?? 0,
      queued: this.scheduler?.queued ?? 0,
      uptimeS: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
    };
  }

  private subscribe(broker: StompConnection): void {
    const { config, logger } = this;
    const b = config.broker;
    // At least max_in_flight messages must be able to reach the agent, or max_in_flight means nothing.
    const window = {
      messages: Math.max(b.prefetch, config.agent.maxInFlight),
      messageBytes: config.agent.maxMessageBytes,
    };
    const stops: (() => void)[] = [];
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
      stops.push(broker.subscribe(spec, (message) => void this.deliver(message, planned.role)));
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
    this.unsubscribe = () => {
      for (const stop of stops) stop();
    };
  }

  /**
   * At-least-once: a message is acknowledged only once handled (samples registered or in the
   * outbox, and broadcast). A passing failure is retried here, with backoff, rather than NACKed:
   * ActiveMQ Classic takes a STOMP NACK as a poison acknowledgement and drops the message (or
   * dead-letters it), which is the opposite of a retry. When the agent stops or the connection
   * drops first, the message stays unacknowledged and the broker hands it out again.
   */
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
      await this.refuse(message.body, message.messageId, code, reason, { headers: headerNames(message) });
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
        this.requireScheduler().settled(last);
        if (late) this.followUp(last);
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
      if (previous) this.requireScheduler().revert(previous);
      const { verdict, stf } = await this.handle(message.body, message.messageId, attempt, true, role);
      if (stf) {
        attempted(stf);
        previous = stf;
      }
      if (verdict === 'ack') {
        message.ack();
        return;
      }
      if (this.stopping || !message.isLive()) return;
      const waitMs = Math.min(30_000, 500 * 2 ** attempt);
      this.logger.warn(
        { msgId: message.messageId, attempt: attempt + 1, retryInMs: waitMs },
        'message not fully handled; retrying',
      );
      await sleep(waitMs);
      if (this.stopping || !message.isLive()) return;
    }
  }

  /** See reissue.ts: a redelivered message from a shared Artemis queue goes back on it as a new one. */
  private async reissued(message: InboundMessage, role: Role): Promise<boolean> {
    const broker = this.broker;
    const destination = this.config.broker.subscription;
    const headers = broker && reissueHeaders(broker.brokerKind, role, destination, message.headers);
    if (!broker || !headers) return false;
    try {
      await broker.publish(destination, message.body, headers);
    } catch (err) {
      // Handled as it is, then: the broker's count goes on.
      this.logger.warn(
        { msgId: message.messageId, err: { message: messageOf(err) } },
        'redelivered message not reissued',
      );
      return false;
    }
    message.ack();
    this.metrics.messagesReissued.inc();
    this.logger.info(
      { msgId: message.messageId, reissues: headers[REISSUE_HEADER] },
      'redelivered message put back on its queue as a new one',
    );
    return true;
  }

  private async onLifecycle(message: RunLifecycle, messageId: string): Promise<void> {
    const { logger } = this;
    const run = this.runs.apply(message);
    const log = logger.child({ run: message.runId, msgId: messageId });
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
    if (this.runEnds) this.track(this.runEnds.close(run));
  }

  private track(work: Promise<void>): void {
    this.lifecycleWork.add(work);
    void work.finally(() => this.lifecycleWork.delete(work));
  }

  /**
   * The agent id from swf-monitor. Like BaseAgent, keep asking while the monitor is down (5 s by
   * default, doubling up to 60 s), since an agent without a name cannot report; unlike it, a stop
   * signal ends the wait.
   */
  private async agentId(monitor: MonitorClient, signal?: AbortSignal): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await monitor.nextAgentId(signal);
      } catch (err) {
        if (signal?.aborted)
          throw new FastmonError('SHUTDOWN', 'stopped while waiting for an agent id from swf-monitor');
        if (isFastmonError(err, 'MONITOR_REJECTED') || isFastmonError(err, 'MONITOR_REDIRECT')) throw err;
        const waitMs = Math.min(60_000, 10 * this.config.monitor.retryDelayMs * 2 ** attempt);
        this.logger.error(
          { code: isFastmonError(err) ? err.code : 'MONITOR_UNAVAILABLE', retryInMs: waitMs },
          `cannot get an agent id from swf-monitor: ${messageOf(err)}`,
        );
        await sleep(waitMs, undefined, { signal }).catch(() => {});
      }
    }
  }

  private operationalState(): OperationalState {
    if (this.stopping) return 'EXITED';
    return (this.scheduler?.inFlight ?? 0) > 0 ? 'PROCESSING' : 'READY';
  }

  private describe(): string {
    const t = this.scheduler?.totals;
    if (!t) return '';
    const outbox = this.deferred ? `, outbox depth ${this.deferred.depth}` : '';
    const port = this.ops ? `, metrics port ${this.ops.port}` : '';
    return `STFs sampled ${t.stfsSampled}/${t.stfsReceived}, TF samples registered ${t.tfsRegistered}, failed ${t.tfsFailed}, in flight ${this.scheduler?.inFlight ?? 0}${outbox}${port}`;
  }

  private requireScheduler(): Scheduler {
    if (!this.scheduler) throw new FastmonError('SHUTDOWN', 'agent not started');
    return this.scheduler;
  }
}

/** Rejects with SHUTDOWN once `signal` is aborted; never resolves. */
function shutdownOn(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const stop = () => reject(new FastmonError('SHUTDOWN', 'stopped during start-up'));
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
  });
}

/** How many headers a refused frame kept, and a few of their names, for the log line. */
function headerNames(message: InboundMessage): { count: number; first: string[] } {
  const names = Object.keys(message.headers);
  return { count: names.length, first: names.slice(0, 8).map((n) => n.slice(0, 64)) };
}
