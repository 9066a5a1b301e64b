// Prometheus metrics of one agent, on a registry of its own (several agents can live in one process).

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ErrorCodes } from '../errors.js';
import { KNOWN_TYPES } from '../messaging/codec.js';

export type Metrics = ReturnType<typeof createMetrics>;

/** What a label outside its closed set becomes. */
export const OTHER = 'other';
const MESSAGE_TYPES: ReadonlySet<string> = new Set(KNOWN_TYPES);
const CODES: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/**
 * Label values come from closed sets, so no input can add series: every msg_type ever received
 * used to become a series of its own (300 distinct types made /metrics 3.9 MiB). Message types
 * are the ones the testbed defines (codec.ts), error codes the catalogue's; anything else is
 * counted under `other`.
 */
function closedLabel<T extends string, L extends T>(
  counter: Counter<T>,
  label: L,
  allowed: ReadonlySet<string>,
): Counter<T> {
  const inc = counter.inc.bind(counter) as (labels: Record<string, string | number>, value?: number) => void;
  counter.inc = ((labels?: Record<string, string | number> | number, value?: number) => {
    if (labels === undefined || typeof labels === 'number') return inc({ [label]: OTHER }, labels);
    const v = String(labels[label]);
    inc(allowed.has(v) ? labels : { ...labels, [label]: OTHER }, value);
  }) as typeof counter.inc;
  return counter;
}

export function createMetrics() {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    messages: closedLabel(
      new Counter({
        name: 'fastmon_messages_total',
        help: 'Messages received, by msg_type (unrelated types included).',
        labelNames: ['msg_type'],
        registers,
      }),
      'msg_type',
      MESSAGE_TYPES,
    ),
    messagesRejected: closedLabel(
      new Counter({
        name: 'fastmon_messages_rejected_total',
        help: 'Messages refused before processing, by error code (bad JSON, wrong types, too large).',
        labelNames: ['code'],
        registers,
      }),
      'code',
      CODES,
    ),
    messagesReissued: new Counter({
      name: 'fastmon_messages_reissued_total',
      help: 'Redelivered messages of a shared Artemis queue sent back to it as new ones (so the redelivery limit never dead-letters an STF).',
      registers,
    }),
    messagesOtherNamespace: new Counter({
      name: 'fastmon_messages_other_namespace_total',
      help: 'Messages ignored because they belong to another testbed namespace.',
      registers,
    }),
    runsTracked: new Gauge({
      name: 'fastmon_runs_tracked',
      help: 'Runs the agent keeps state for (active and recently ended), at most agent.max_runs.',
      registers,
    }),
    runsRefused: new Counter({
      name: 'fastmon_runs_refused_total',
      help: 'Runs not tracked because agent.max_runs were tracked already (their STFs are still sampled).',
      registers,
    }),
    runsTimedOut: new Counter({
      name: 'fastmon_runs_timed_out_total',
      help: 'Runs closed because no message came for agent.run_idle_timeout_s.',
      registers,
    }),
    stfs: new Counter({
      name: 'fastmon_stfs_total',
      help: 'stf_ready outcomes: sampled, skipped (run state or selection), failed, duplicate, no_file.',
      labelNames: ['outcome'],
      registers,
    }),
    stfErrors: closedLabel(
      new Counter({
        name: 'fastmon_stf_errors_total',
        help: 'STF failures and warnings by error code.',
        labelNames: ['code'],
        registers,
      }),
      'code',
      CODES,
    ),
    tfsRegistered: new Counter({
      name: 'fastmon_tfs_registered_total',
      help: 'TF samples recorded (created, or found already registered).',
      labelNames: ['created'],
      registers,
    }),
    tfsFailed: closedLabel(
      new Counter({
        name: 'fastmon_tfs_failed_total',
        help: 'TF samples whose registration failed, by error code.',
        labelNames: ['code'],
        registers,
      }),
      'code',
      CODES,
    ),
    tfsDeferred: new Counter({
      name: 'fastmon_tfs_deferred_total',
      help: 'TF samples put in the outbox because swf-monitor was unavailable.',
      registers,
    }),
    outboxDepth: new Gauge({
      name: 'fastmon_outbox_depth',
      help: 'TF samples waiting in the outbox for swf-monitor.',
      registers,
    }),
    outboxBytes: new Gauge({
      name: 'fastmon_outbox_bytes',
      help: 'Bytes of the JSON payloads waiting in the outbox (a table of the local store).',
      registers,
    }),
    broadcasts: closedLabel(
      new Counter({
        name: 'fastmon_broadcasts_total',
        help: 'Notifications published, by msg_type and result.',
        labelNames: ['msg_type', 'result'],
        registers,
      }),
      'msg_type',
      MESSAGE_TYPES,
    ),
    monitorRequests: new Histogram({
      name: 'fastmon_monitor_request_seconds',
      help: 'swf-monitor request latency by method, endpoint and HTTP status (or "error").',
      labelNames: ['method', 'endpoint', 'status'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    reconnects: new Counter({
      name: 'fastmon_broker_reconnects_total',
      help: 'Broker connections re-established after a loss.',
      registers,
    }),
    brokerConnected: new Gauge({
      name: 'fastmon_broker_connected',
      help: '1 while the STOMP connection is up.',
      registers,
    }),
    inFlight: new Gauge({
      name: 'fastmon_stfs_in_flight',
      help: 'STFs being read, registered or broadcast right now.',
      registers,
    }),
    queued: new Gauge({
      name: 'fastmon_stfs_queued',
      help: 'STFs accepted and waiting for an in-flight slot.',
      registers,
    }),
    // Interop with the testbed's producers and swf-monitor (issue 13).
    stfAttempts: new Counter({
      name: 'fastmon_stf_attempts_total',
      help: 'Times an stf_ready was handled, retries inside the agent included (fastmon_stfs_total counts deliveries).',
      registers,
    }),
    stfsLate: new Counter({
      name: 'fastmon_stfs_late_total',
      help: "New STFs of a run that arrived after the run's final fastmon_status.",
      registers,
    }),
    runsIncomplete: new Counter({
      name: 'fastmon_runs_incomplete_total',
      help: 'Runs whose end-of-run grace ran out before every STF end_run announced had arrived.',
      registers,
    }),
    tfCountLookups: new Counter({
      name: 'fastmon_tf_count_lookups_total',
      help: "StfFile lookups for an STF's tf_count (neither header nor message had it), by result.",
      labelNames: ['result'],
      registers,
    }),
    logRecords: new Counter({
      name: 'fastmon_monitor_log_records_total',
      help: "Log records for swf-monitor's /api/logs/, by result: shipped, refused, failed, dropped.",
      labelNames: ['result'],
      registers,
    }),
  };
}
