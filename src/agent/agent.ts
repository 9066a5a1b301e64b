// The agent's composition: buildAgent composes configuration, messaging, run state, the inputs, the scheduler, sinks, heartbeats and ops.

import { messageOf } from '../errors.js';
import { BrokerInput } from '../inputs/broker.js';
import { MessageIntake } from '../inputs/messages.js';
import type { MonitorClient } from '../monitor/client.js';
import { type Health, type OpsServer, startOpsServerNear } from '../ops/http.js';
import { createMetrics, type Metrics } from '../ops/metrics.js';
import { RunStates } from '../run/run-states.js';
import { createInlineExecutor, createPool } from '../scheduler/pool.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { type Broadcaster, StompBroadcaster, StreamBroadcaster } from '../sinks/broadcast.js';
import { CatalogRegistrar } from '../sinks/catalog.js';
import { DbRegistrar } from '../sinks/db-registrar.js';
import { DeferredSamples } from '../sinks/deferred-samples.js';
import { MonitorRegistrar, type Registrar } from '../sinks/registrar.js';
import { storeOptions } from '../store/paths.js';
import { Store } from '../store/store.js';
import { Heartbeats, type OperationalState } from './heartbeat.js';
import { agentName } from './identity.js';
import { Agent, type AgentHealth, type AgentOptions, type Life, metricsUrl } from './lifecycle.js';
import { RunEnds } from './run-end.js';
import { RunSummaries } from './run-summaries.js';
import { brokerConnection, monitorClient } from './wiring.js';

export type { Agent, AgentHealth, AgentOptions };

export async function buildAgent(options: AgentOptions, signal?: AbortSignal): Promise<Agent> {
  const { config, logger } = options;
  const life: Life = { startedAt: new Date(), stopping: false };
  const metrics = createMetrics();
  const runs: RunStates = new RunStates({
    maxRuns: config.agent.maxRuns,
    idleTimeoutMs: config.agent.runIdleTimeoutS * 1000,
    onRefused: (runId) => {
      metrics.runsRefused.inc();
      // Once per refused id would be a log line per STF: the first one of each hundred says it.
      if (runs.refused % 100 === 1)
        logger.warn(
          { run: runId, maxRuns: config.agent.maxRuns, refused: runs.refused },
          'too many runs tracked at once: this run gets no per-run counts or summaries',
        );
    },
  });
  let agent: Agent | undefined;
  const ops = await openOps(options, metrics, () => agent?.health() ?? startingHealth(life));
  const opened: (() => Promise<unknown>)[] = ops ? [() => ops.close()] : [];
  try {
    const store = await Store.acquire(storeOptions(config, logger));
    opened.push(() => store.release());
    const monitor = monitorClient(config, logger, (method, endpoint, status, seconds) =>
      metrics.monitorRequests.observe({ method, endpoint, status }, seconds),
    );
    if (monitor) opened.push(() => monitor.http.close());
    const name = await agentName(monitor, config.monitor.retryDelayMs, logger, signal);
    const registrar = await openRegistrar(options, store, monitor, metrics, signal);
    opened.push(() => registrar.close());
    options.logShipper?.bind(name, (result, n) => metrics.logRecords.inc({ result }, n));
    const identity = { sender: name, namespace: config.agent.namespace || null };
    const processedBy = () => name;
    const broker = config.broker.host
      ? brokerConnection(config, {
          clientId: config.broker.clientId || name,
          maxBodyBytes: config.agent.maxMessageBytes,
          frameLimits: options.frameLimits,
          logger,
        })
      : null;
    let broadcaster: Broadcaster;
    if (broker) {
      broadcaster = new StompBroadcaster(broker, config.broker.broadcast, identity, config.broker.persistent);
    } else {
      broadcaster = new StreamBroadcaster(
        options.stdout ?? process.stdout,
        identity,
        options.formatNotification,
      );
      logger.info('no ACTIVEMQ_HOST: notifications are printed to stdout');
    }
    // The outbox's drainer may report a change while the rest is built: heartbeats come later.
    let heartbeats: Heartbeats | null = null;
    const deferred =
      registrar.kind === 'catalog'
        ? null
        : await DeferredSamples.open({
            config,
            store,
            logger,
            metrics,
            registrar,
            broadcaster,
            processedBy,
            onChange: () => heartbeats?.changed(),
          });
    if (deferred) opened.push(() => deferred.close());
    const inline = options.inline ?? config.agent.inline;
    const executor = inline ? createInlineExecutor() : createPool({ workers: config.agent.workers });
    const scheduler = new Scheduler({
      executor,
      registrar,
      broadcaster,
      runs,
      sampling: config.sampling,
      dataRoots: config.agent.dataRoots,
      outputDir: config.agent.outputDir || null,
      stfChecksum: config.agent.stfChecksum,
      maxInFlight: config.agent.maxInFlight,
      processedBy,
      defer: deferred ? (sample) => deferred.defer(sample) : undefined,
      logger,
      metrics,
    });
    if (monitor) {
      heartbeats = new Heartbeats(
        monitor,
        {
          name: processedBy,
          namespace: identity.namespace,
          mqConnected: () => broker?.connected ?? false,
          usesBroker: broker !== null,
          operationalState: () => operationalState(life, scheduler),
          summary: () => describe(scheduler, deferred, ops),
          agentUrl: () => metricsUrl(config, ops),
        },
        config.monitor.heartbeatIntervalS * 1000,
        logger,
      );
    }
    const beats = heartbeats;
    broker?.on('connected', (first: boolean) => {
      metrics.brokerConnected.set(1);
      if (!first) metrics.reconnects.inc();
      beats?.changed();
    });
    broker?.on('disconnected', () => {
      metrics.brokerConnected.set(0);
      beats?.changed();
    });
    const summaries = new RunSummaries({
      runs,
      broadcaster,
      processedBy,
      outboxDepth: () => deferred?.depth ?? null,
      intervalS: config.agent.summaryIntervalS,
      idleTimeoutS: config.agent.runIdleTimeoutS,
      logger,
      metrics,
    });
    const runEnds = new RunEnds({
      runs,
      settleRun: (runId) => scheduler.settleRun(runId),
      broadcaster,
      summaries: () => summaries,
      processedBy,
      graceS: config.agent.endRunGraceS,
      logger,
      metrics,
    });
    const messages = new MessageIntake({
      config,
      logger,
      metrics,
      runs,
      scheduler,
      runEnds,
      broker,
      processedBy,
      onStfHandled: () => beats?.changed(),
    });
    const brokerInput =
      broker && options.consume !== false
        ? new BrokerInput({ config, logger, metrics, broker, messages, scheduler })
        : null;
    agent = new Agent({
      options,
      name,
      metrics,
      runs,
      life,
      ops,
      store,
      registrar,
      broker,
      monitor,
      deferred,
      executor,
      scheduler,
      heartbeats,
      summaries,
      runEnds,
      messages,
      brokerInput,
    });
    return agent;
  } catch (err) {
    // Refused (tables changed, wrong password) or stopped: close what was opened so far.
    for (const close of opened.reverse()) await close().catch(() => {});
    throw err;
  }
}

/** /healthz while the agent is being built (waiting for an agent id): nothing connected, nothing in flight. */
function startingHealth(life: Life): AgentHealth {
  return {
    ok: true,
    agent: '',
    broker: 'none',
    registrar: null,
    stopping: false,
    inFlight: 0,
    queued: 0,
    uptimeS: Math.round((Date.now() - life.startedAt.getTime()) / 1000),
  };
}

/** The /healthz and /metrics port, unless none is wanted or it cannot be opened (then carry on). */
async function openOps(
  options: AgentOptions,
  metrics: Metrics,
  health: () => Health,
): Promise<OpsServer | null> {
  const { config, logger } = options;
  const wantPort = options.metricsPort !== false || config.agent.httpPortSet;
  if (config.agent.httpPort < 0 || !wantPort) return null;
  try {
    const ops = await startOpsServerNear(
      config.agent.httpHost,
      config.agent.httpPort,
      config.agent.httpPortSet,
      metrics.registry,
      health,
    );
    logger.info(
      { url: metricsUrl(config, ops), port: ops.port, requested: config.agent.httpPort },
      ops.port === config.agent.httpPort
        ? 'metrics and health endpoint up'
        : `metrics and health endpoint up on port ${ops.port} (${config.agent.httpPort} is taken)`,
    );
    return ops;
  } catch (err) {
    logger.error(
      { code: 'METRICS_PORT_IN_USE', err: { message: messageOf(err) } },
      'cannot open the /healthz and /metrics port; carrying on without it',
    );
    return null;
  }
}

/**
 * swf-monitor's REST API with a monitor, the local catalog without one; SWF_MONITOR_DB_URL: rows
 * straight into swf-monitor's tables (identity and heartbeats stay on REST).
 */
async function openRegistrar(
  options: AgentOptions,
  store: Store,
  monitor: MonitorClient | null,
  metrics: Metrics,
  signal?: AbortSignal,
): Promise<Registrar> {
  const { config, logger } = options;
  if (!config.monitorDb.url) {
    if (monitor) return new MonitorRegistrar(monitor, logger);
    logger.info({ catalog: store.file }, 'no SWF_MONITOR_URL: registering into the local catalog');
    return new CatalogRegistrar(store, logger);
  }
  return DbRegistrar.open(
    {
      ...config.monitorDb,
      logger,
      observe: (table, _rows, seconds, ok) =>
        metrics.monitorRequests.observe(
          { method: 'SQL', endpoint: table, status: ok ? 'ok' : 'error' },
          seconds,
        ),
    },
    signal,
  );
}

function operationalState(life: Life, scheduler: Scheduler): OperationalState {
  if (life.stopping) return 'EXITED';
  return scheduler.inFlight > 0 ? 'PROCESSING' : 'READY';
}

/** The counters in the heartbeat's description. */
function describe(scheduler: Scheduler, deferred: DeferredSamples | null, ops: OpsServer | null): string {
  const t = scheduler.totals;
  const outbox = deferred ? `, outbox depth ${deferred.depth}` : '';
  const port = ops ? `, metrics port ${ops.port}` : '';
  return `STFs sampled ${t.stfsSampled}/${t.stfsReceived}, TF samples registered ${t.tfsRegistered}, failed ${t.tfsFailed}, in flight ${scheduler.inFlight}${outbox}${port}`;
}
