// The wire boundary: testbed JSON (snake_case) in and out, validated here and nowhere else.

import { z } from 'zod';
import { FastmonError } from '../errors.js';
import type { RunCounts } from '../run/counts.js';
import { FIELD_LIMITS, type LimitedField } from './limits.js';

// The counts are the run's (src/run/counts.ts, a leaf without imports); this module only names them
// on the wire.

export const LIFECYCLE_TYPES = ['run_imminent', 'start_run', 'pause_run', 'resume_run', 'end_run'] as const;
export type LifecycleType = (typeof LIFECYCLE_TYPES)[number];

/** What fastmon itself publishes; consumers (and our own selector) recognise them by msg_type. */
export const OWN_TYPES = ['tf_file_registered', 'fastmon_status', 'fastmon_summary'] as const;

/** A fastmon broadcast, told by the `msg_type` header our broadcasts carry (testbed producers set none). */
export function isOwnBroadcast(msgTypeHeader: string | undefined): boolean {
  return (OWN_TYPES as readonly string[]).includes(msgTypeHeader ?? '');
}

export function isLifecycle(msgType: string): msgType is LifecycleType {
  return (LIFECYCLE_TYPES as readonly string[]).includes(msgType);
}

/**
 * The message types the testbed defines that reach a fastmon agent on its topic (stf_gen and the
 * older name of stf_ready, data_ready, included): the closed set metric labels are drawn from.
 */
export const KNOWN_TYPES = [
  'stf_ready',
  ...LIFECYCLE_TYPES,
  'stf_gen',
  'data_ready',
  ...OWN_TYPES,
  'fastmon_dead_letter',
] as const;

// Producers disagree on types (docs/testbed-interface.md, "Run lifecycle messages", "stf_ready"): run_id is a string from the workflow
// runner and an int from daqsim; optional fields arrive as null from the example data agent.
const runIdField = z.union([z.string(), z.number().int()]).nullish();
const text = z.string().nullish();
const count = z.number().int().nonnegative().nullish();

const common = {
  msg_type: z.string(),
  namespace: text,
  run_id: runIdField,
  execution_id: text,
  state: text,
  substate: text,
  timestamp: z.union([z.string(), z.number()]).nullish(),
  sender: text,
};

const stfReadySchema = z.looseObject({
  ...common,
  filename: text,
  file_url: text,
  checksum: text,
  size_bytes: count,
  /** daqsim's key for the same thing. */
  size: count,
  sequence: z.number().int().nullish(),
  tf_count: z.number().int().positive().nullish(),
});

const lifecycleSchema = z.looseObject({
  ...common,
  total_stf_files: count,
});

interface Common {
  runId: string | null;
  executionId: string | null;
  namespace: string | null;
  state: string | null;
  substate: string | null;
}

export interface StfReady extends Common {
  msgType: 'stf_ready';
  filename: string | null;
  fileUrl: string | null;
  sizeBytes: number | null;
  checksum: string | null;
  sequence: number | null;
  tfCount: number | null;
}

export interface RunLifecycle extends Common {
  msgType: LifecycleType;
  totalStfFiles: number | null;
}

export interface Ignored {
  msgType: string;
  namespace: string | null;
  ignored: true;
}

export type Incoming = StfReady | RunLifecycle | Ignored;

/**
 * Decodes one message body. Unrelated types (the topic carries every testbed message) are
 * returned as `ignored` after the cheapest possible look: the envelope only.
 * Throws MESSAGE_NOT_JSON / MESSAGE_INVALID with the reason.
 */
export function decodeMessage(body: string): Incoming {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new FastmonError('MESSAGE_NOT_JSON', `message body is not JSON: ${(err as Error).message}`, {
      preview: body.slice(0, 120),
    });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new FastmonError('MESSAGE_INVALID', 'message body is not a JSON object', {
      preview: body.slice(0, 120),
    });
  }
  const envelope = json as { msg_type?: unknown; namespace?: unknown };
  const msgType = envelope.msg_type;
  if (typeof msgType !== 'string' || msgType === '') {
    throw new FastmonError('MESSAGE_INVALID', 'message has no msg_type string', {
      msg_type: msgType === undefined ? null : typeof msgType === 'string' ? msgType : typeof msgType,
    });
  }
  checkLength('msg_type', msgType);
  if (msgType === 'stf_ready') return decodeStfReady(json);
  if ((LIFECYCLE_TYPES as readonly string[]).includes(msgType)) return decodeLifecycle(json);
  const ns = envelope.namespace;
  if (typeof ns === 'string') checkLength('namespace', ns);
  return { msgType, namespace: typeof ns === 'string' ? ns : null, ignored: true };
}

/**
 * A field the agent copies into headers, names, rows, logs or metric labels may not be longer
 * than FIELD_LIMITS (limits.ts): a 70,000-character run_id would otherwise ride on every
 * broadcast and summary as a STOMP header, and the broker refuses frames that large.
 */
function checkLength(field: LimitedField, value: string | number | null | undefined): void {
  if (typeof value !== 'string') return;
  const limit = FIELD_LIMITS[field];
  if (value.length > limit) {
    throw new FastmonError(
      'MESSAGE_INVALID',
      `${field} is ${value.length} characters, over the limit of ${limit}`,
      {
        field,
        length: value.length,
        limit,
      },
    );
  }
}

/** The length checks every stf_ready and lifecycle message goes through, after the type checks. */
function checkLengths(m: Record<string, unknown>, fields: readonly LimitedField[]): void {
  for (const field of fields) checkLength(field, m[field] as string | null | undefined);
  const filename = m.filename;
  if (typeof filename === 'string')
    checkLength('filename_base', filename.slice(filename.lastIndexOf('/') + 1));
}

const COMMON_LIMITED: readonly LimitedField[] = [
  'namespace',
  'run_id',
  'execution_id',
  'sender',
  'state',
  'substate',
];

function decodeStfReady(json: unknown): StfReady {
  const parsed = stfReadySchema.safeParse(json);
  if (!parsed.success) throw invalid('stf_ready has fields of the wrong type', parsed.error);
  const m = parsed.data;
  checkLengths(m, [...COMMON_LIMITED, 'filename', 'file_url', 'checksum']);
  const filename = nonEmpty(m.filename);
  return {
    msgType: 'stf_ready',
    ...commonOf(m, filename),
    filename,
    fileUrl: nonEmpty(m.file_url),
    sizeBytes: m.size_bytes ?? m.size ?? null,
    checksum: nonEmpty(m.checksum),
    sequence: m.sequence ?? null,
    tfCount: m.tf_count ?? null,
  };
}

function decodeLifecycle(json: unknown): RunLifecycle {
  const parsed = lifecycleSchema.safeParse(json);
  if (!parsed.success)
    throw invalid(
      `${String((json as { msg_type: string }).msg_type)} has fields of the wrong type`,
      parsed.error,
    );
  const m = parsed.data;
  checkLengths(m, COMMON_LIMITED);
  return {
    msgType: m.msg_type as LifecycleType,
    ...commonOf(m, null),
    totalStfFiles: m.total_stf_files ?? null,
  };
}

function commonOf(m: z.infer<typeof lifecycleSchema>, filename: string | null): Common {
  const runId =
    m.run_id === null || m.run_id === undefined || m.run_id === '' ? null : String(m.run_id).trim();
  return {
    runId: runId ?? (filename ? runFromFilename(filename) : null),
    executionId: nonEmpty(m.execution_id),
    namespace: nonEmpty(m.namespace),
    state: nonEmpty(m.state),
    substate: nonEmpty(m.substate),
  };
}

/** Testbed STF names carry the run: `swf.<run>.<seq>.stf` (workflows and daqsim; docs/testbed-interface.md, "STFs and TFs"). */
export function runFromFilename(filename: string): string | null {
  const base = filename.slice(filename.lastIndexOf('/') + 1);
  const match = /^swf\.(\d+)\.(\d+)\.stf$/i.exec(base);
  return match ? String(Number(match[1])) : null;
}

function nonEmpty(value: string | null | undefined): string | null {
  return value === undefined || value === null || value.trim() === '' ? null : value;
}

function invalid(what: string, error: z.ZodError): FastmonError {
  const issues = error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
  return new FastmonError('MESSAGE_INVALID', `${what}: ${issues.join('; ')}`, { issues });
}

// --- Outgoing --------------------------------------------------------------------------------

export interface TfRegisteredFields {
  processedBy: string;
  runId: string | null;
  executionId: string | null;
  stfFilename: string;
  tfFileId: string;
  tfFilename: string;
  tfFirst: number;
  tfLast: number;
  tfCount: number;
  fileSizeBytes: number | null;
  checksum: string | null;
  status: string;
}

/**
 * `tf_file_registered` as the fast processing agent and the SSE relay read it (docs/testbed-interface.md, "tf_file_registered"):
 * `run_id` always a string, `file_size_bytes` in bytes, and no `agent_name` key, because
 * swf-monitor's listener swallows any body with both `agent_name` and `status` as a heartbeat.
 * `sender` and `namespace` are added by the publisher, as BaseAgent.send_message does.
 */
export function tfFileRegistered(f: TfRegisteredFields, now = new Date()): Record<string, unknown> {
  const body: Record<string, unknown> = {
    msg_type: 'tf_file_registered',
    processed_by: f.processedBy,
    run_id: f.runId,
    execution_id: f.executionId,
    stf_filename: f.stfFilename,
    tf_file_id: f.tfFileId,
    tf_filename: f.tfFilename,
    tf_first: f.tfFirst,
    tf_last: f.tfLast,
    tf_count: f.tfCount,
    file_size_bytes: f.fileSizeBytes,
    status: f.status,
    timestamp: localIsoTimestamp(now),
  };
  if (f.checksum !== null) body.checksum = f.checksum;
  return body;
}

/** `fastmon_status` (docs/testbed-interface.md, "fastmon_status"): defined by the testbed, finally sent, with the run's counts. */
export function fastmonStatus(
  fields: {
    processedBy: string;
    status: 'started' | 'completed' | 'error';
    message: string;
    runId: string | null;
    executionId: string | null;
    counts?: RunCounts;
    closing?: RunClosing;
  },
  now = new Date(),
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    msg_type: 'fastmon_status',
    processed_by: fields.processedBy,
    status: fields.status,
    message: fields.message,
    run_id: fields.runId,
    execution_id: fields.executionId,
    timestamp: localIsoTimestamp(now),
  };
  if (fields.counts)
    Object.assign(body, { stfs_received: fields.counts.stfsReceived, ...countFields(fields.counts) });
  if (fields.closing) {
    const c = fields.closing;
    Object.assign(body, {
      stfs_expected: c.expected,
      stfs_seen: c.seen,
      stfs_missing: c.missing,
      grace_expired: c.graceExpired,
      grace_s: c.graceS,
      update: c.update,
    });
  }
  return body;
}

/** How a run's end went: the STFs end_run announced against those that arrived within the grace. */
export interface RunClosing {
  /** `total_stf_files` of end_run; null when the producer did not say (daqsim). */
  expected: number | null;
  /** Distinct STFs of the run seen so far. */
  seen: number;
  /** Announced but not seen when the status was sent (0 when nothing was announced). */
  missing: number;
  /** The grace period ran out before every announced STF arrived. */
  graceExpired: boolean;
  graceS: number;
  /** A follow-up status, sent because an STF arrived after the final one. */
  update: boolean;
}

/** A run's counts as the testbed's snake_case fields (all but the received count, named per message). */
function countFields(c: RunCounts): Record<string, number> {
  return {
    stfs_sampled: c.stfsSampled,
    stfs_skipped: c.stfsSkipped,
    stfs_failed: c.stfsFailed,
    stfs_duplicate: c.stfsDuplicate,
    stfs_without_file: c.stfsWithoutFile,
    tf_files_registered: c.tfsRegistered,
    tf_files_failed: c.tfsFailed,
    bytes_sampled: c.bytesSampled,
    stf_attempts: c.stfAttempts,
    stfs_late: c.stfsLate,
  };
}

export interface SummaryFields {
  processedBy: string;
  runId: string;
  executionId: string | null;
  final: boolean;
  /** The run was closed because nothing came for the idle timeout (its end_run was never seen). */
  timedOut?: boolean;
  cycleS: number;
  counts: RunCounts;
  rates: { stfsPerS: number; tfFilesPerS: number; bytesPerS: number };
  histogram: { edges: readonly number[]; counts: readonly number[] };
  errors: Record<string, number>;
  outboxDepth: number | null;
}

/**
 * `fastmon_summary`, one per active run every cycle (ALICE-QC-like, default 10 s) and a final one
 * on end_run: what a shift crew needs at a glance (README "fastmon_summary"). No `status` key, and
 * no `agent_name` either (swf-monitor would take the pair for a heartbeat).
 */
export function fastmonSummary(f: SummaryFields, now = new Date()): Record<string, unknown> {
  const c = f.counts;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return {
    msg_type: 'fastmon_summary',
    processed_by: f.processedBy,
    run_id: f.runId,
    execution_id: f.executionId,
    timestamp: localIsoTimestamp(now),
    final: f.final,
    timed_out: f.timedOut ?? false,
    cycle_s: f.cycleS,
    stfs_seen: c.stfsReceived,
    ...countFields(c),
    outbox_depth: f.outboxDepth,
    rates: {
      stfs_per_s: round(f.rates.stfsPerS),
      tf_files_per_s: round(f.rates.tfFilesPerS),
      bytes_per_s: round(f.rates.bytesPerS),
    },
    sample_size_histogram: { edges_bytes: [...f.histogram.edges], counts: [...f.histogram.counts] },
    errors: { ...f.errors },
  };
}

/**
 * Adds what BaseAgent.send_message adds (`sender`, `namespace`) and refuses the one shape
 * swf-monitor would misread as an agent heartbeat.
 */
export function finalizeOutgoing(
  body: Record<string, unknown>,
  sender: string,
  namespace: string | null,
): Record<string, unknown> {
  // Copied, then the two keys set: `{ ...body, sender, namespace }` is the same object, but V8 11
  // (Node 20) builds a spread followed by more keys on a slow path, 3.4 µs against 0.14 µs here,
  // seven times per STF (BENCHMARKS.md, "The agent's own cost"). Bodies are built by this module
  // and the agent's commands, never parsed from the wire, so no `__proto__` key reaches assign.
  const out: Record<string, unknown> = Object.assign({}, body);
  out.sender = sender;
  out.namespace = namespace ?? body.namespace ?? null;
  if ('agent_name' in out && 'status' in out) {
    throw new Error(
      'refusing to publish a body with both agent_name and status (swf-monitor treats it as a heartbeat)',
    );
  }
  return out;
}

/** Local ISO-8601 time without zone, the testbed's `datetime.now().isoformat()` shape. */
export function localIsoTimestamp(d: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}000`
  );
}
