// In-process double of swf-monitor's REST API that enforces its DRF rules and quirks, with fault injection.
//
// Facts come from docs/testbed-interface.md ("Agent identity and heartbeats", "swf-monitor's REST API"); messages are DRF's own wording so that
// a client tested here reacts to the real server's answers. No vitest import: bench/ uses it as well.

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// ---------------------------------------------------------------------------------------------------------
// Public types: rows are stored exactly as the API serializes them.

export type FileStatus = 'registered' | 'processing' | 'processed' | 'failed' | 'done';
export type AgentStatus = 'UNKNOWN' | 'OK' | 'WARNING' | 'ERROR' | 'EXITED';
export type OperationalState = 'STARTING' | 'READY' | 'PROCESSING' | 'EXITED';

export interface RunRow {
  run_id: number;
  run_number: number;
  start_time: string;
  end_time: string | null;
  run_conditions: unknown;
}

export interface StfFileRow {
  file_id: string;
  /** The Run's primary key (`run_id`), not its run_number. */
  run: number;
  machine_state: string;
  stf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: FileStatus;
  metadata: unknown;
  workflow_id: string | null;
  daq_state: string | null;
  daq_substate: string | null;
  workflow_status: string | null;
  tf_count: number | null;
  created_at: string;
}

export interface FastMonFileRow {
  tf_file_id: string;
  /** The parent StfFile's stf_filename (SlugRelatedField). */
  stf_file: string;
  tf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: FileStatus;
  metadata: unknown;
  tf_count: number | null;
  tf_first: number | null;
  tf_last: number | null;
  created_at: string;
  updated_at: string;
}

export interface SystemAgentRow {
  id: number;
  instance_name: string;
  agent_type: string;
  description: string;
  status: AgentStatus;
  last_heartbeat: string | null;
  agent_url: string | null;
  workflow_enabled: boolean;
  current_stf_count: number;
  total_stf_processed: number;
  last_stf_processed: string | null;
  pid: number | null;
  hostname: string | null;
  operational_state: OperationalState | null;
  namespace: string | null;
  metadata: unknown;
  created_at: string;
  updated_at: string;
}

export interface SubscriberRow {
  subscriber_id: number;
  subscriber_name: string;
  fraction: number | null;
  description: string | null;
  is_active: boolean;
  delivery_type: 'activemq' | 'sse';
  client_ip: string | null;
  client_location: string | null;
  connected_at: string | null;
  disconnected_at: string | null;
  last_activity: string | null;
  message_filters: unknown;
  messages_received: number;
  messages_sent: number;
  messages_dropped: number;
  created_at: string;
  updated_at: string;
}

/** An AppLog row (swf_applog), as POST /api/logs/ stores it. */
export interface AppLogRow {
  id: number;
  app_name: string;
  instance_name: string;
  timestamp: string;
  level: number;
  levelname: string;
  message: string;
  module: string;
  funcname: string;
  lineno: number;
  process: number;
  thread: number;
  extra_data: unknown;
}

export interface WorkflowDefinitionRow {
  id: number;
  workflow_name: string;
  version: string;
  workflow_type: string;
  definition: string;
  parameter_values: unknown;
  created_by: string;
  created_at: string;
  updated_at: string;
}

export interface WorkflowExecutionRow {
  execution_id: string;
  /** The WorkflowDefinition's id. */
  workflow_definition: number;
  namespace: string | null;
  parameter_values: unknown;
  performance_metrics: unknown;
  status: string;
  start_time: string;
  end_time: string | null;
  executed_by: string;
}

/** One accepted POST /api/systemagents/heartbeat/, body as sent. */
export interface HeartbeatRecord {
  receivedAt: number;
  status: 200 | 201;
  body: Record<string, unknown>;
}

export interface RequestRecord {
  method: string;
  /** The raw request target: base path, path and query string. */
  path: string;
  /** 0 while a hung request is held. */
  status: number;
  /** Parsed JSON when the body parses, the raw text otherwise, absent when empty. */
  body?: unknown;
  /** Epoch milliseconds. */
  receivedAt: number;
  fault?: 'fail' | 'hang';
  /** The client went away before the answer (timeout, abort); hung requests are then never processed. */
  aborted?: true;
}

/** `path`: a string matches when the request target contains it; a RegExp is tested against the target. */
export interface FaultMatch {
  path?: RegExp | string;
  method?: string;
  /** Number of matching requests affected; forever (until clearFaults) when omitted. */
  times?: number;
}

export interface FailRule extends FaultMatch {
  status: number;
  /** A string is sent as text/html (what Apache or Django error pages look like), anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface MonitorDoubleOptions {
  token?: string;
  port?: number;
  /** Sub-path the API is mounted under, e.g. '/swf-monitor' as in production. */
  basePath?: string;
  /**
   * Serve the PROPOSED `POST /api/fastmon-files/bulk/` (docs/bulk-posting.md), which swf-monitor does not
   * have. Off by default: the path then reaches the detail route as it does in swf-monitor today.
   */
  proposedBulk?: boolean;
  /**
   * Keep at most about this many FastMonFile rows, forgetting the oldest (for the bench; default: all).
   * A long bench run posts a million rows, and V8 grows a Map by rehashing all of it at once: at
   * 262,144 and 524,288 rows the double's indexes stalled it for 100–450 ms, a latency tail that
   * swf-monitor's PostgreSQL does not have. A forgotten row no longer holds its tf_filename, so tests,
   * which check uniqueness, keep every row.
   */
  retainFastmonFiles?: number;
}

export type RunSeed = { run_number: number } & Partial<Omit<RunRow, 'run_id'>>;
export type StfFileSeed = { stf_filename: string; run_number?: number; run?: number } & Partial<
  Omit<StfFileRow, 'file_id' | 'run' | 'created_at'>
>;
export type FastMonFileSeed = { stf_file: string; tf_filename: string } & Partial<
  Omit<FastMonFileRow, 'tf_file_id' | 'stf_file' | 'created_at' | 'updated_at'>
>;

export interface MonitorDouble {
  /** `http://127.0.0.1:<port><basePath>`; the API lives under `${url}/api/`. */
  readonly url: string;
  readonly port: number;
  readonly token: string;
  /** Tables in insertion order. Read them; change them only through HTTP or the seed helpers. */
  readonly runs: readonly RunRow[];
  readonly stfFiles: readonly StfFileRow[];
  readonly fastmonFiles: readonly FastMonFileRow[];
  readonly agents: readonly SystemAgentRow[];
  readonly subscribers: readonly SubscriberRow[];
  readonly heartbeats: readonly HeartbeatRecord[];
  readonly appLogs: readonly AppLogRow[];
  readonly workflowDefinitions: readonly WorkflowDefinitionRow[];
  readonly workflowExecutions: readonly WorkflowExecutionRow[];
  /**
   * What swf-monitor's ActiveMQ listener makes of a message body it relays: null when it stores it
   * cleanly, else the error it logs. A run lifecycle message whose execution_id names no
   * WorkflowExecution row is logged as an error (with a traceback) for every message: the testbed's
   * runner creates the execution before its first message.
   */
  listenerError(body: Record<string, unknown>): string | null;
  readonly requests: readonly RequestRecord[];
  clearRequests(): void;
  /** Back to the just-started state: empty tables and logs, counters restarted, faults cleared. */
  reset(): void;
  /** Seed helpers: same validation as the API, throw on a violation. */
  addRun(seed: RunSeed): RunRow;
  /** `run_number` creates the Run when it does not exist yet; `run` must be an existing run_id. */
  addStfFile(seed: StfFileSeed): StfFileRow;
  addFastmonFile(seed: FastMonFileSeed): FastMonFileRow;
  /** Answer matching requests with `status` instead of processing them. */
  fail(rule: FailRule): void;
  /** Hold matching requests unanswered; clearFaults() processes and answers them, close() drops them. */
  hang(rule?: FaultMatch): void;
  /** Latency added to every answer, after the request has been processed (writes are already committed). */
  delay(ms: number): void;
  /** Removes fail/hang rules and the delay, and releases hung requests. */
  clearFaults(): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// DRF field validation: a ModelSerializer's conversions and messages for the field kinds used here.

type Errors = Record<string, string[]>;
type Body = Record<string, unknown>;
type Mode = 'create' | 'put' | 'patch';

class FieldError extends Error {}

interface Field {
  kind: 'int' | 'bigint' | 'float' | 'bool' | 'string' | 'choice' | 'datetime' | 'uuid' | 'json' | 'ref';
  required?: boolean;
  nullable?: boolean;
  blank?: boolean;
  maxLength?: number;
  min?: number;
  choices?: readonly string[];
  /** The model default, applied on create when the field is absent (null otherwise). */
  default?: () => unknown;
}

const INT32_MAX = 2147483647;
// Python's int() after DRF strips a trailing '.0', so "12" and "12.0" are integers but "1.5" is not.
const INTEGER_TEXT = /^\s*[-+]?\d+(\.0*)?\s*$/;
const ISO_DATETIME =
  /^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6})\d*)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
const UUID_TEXT = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;
const TRUE_TEXT = new Set(['t', 'y', 'yes', 'true', 'on', '1']);
const FALSE_TEXT = new Set(['f', 'n', 'no', 'false', 'off', '0']);
const DATETIME_ERROR =
  'Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].';

function toInteger(value: unknown, field: Field): number {
  let n: number;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && INTEGER_TEXT.test(value)) n = Number.parseInt(value, 10);
  else throw new FieldError('A valid integer is required.');
  const max = field.kind === 'int' ? INT32_MAX : Number.MAX_SAFE_INTEGER;
  const min = field.min ?? (field.kind === 'int' ? -INT32_MAX - 1 : Number.MIN_SAFE_INTEGER);
  if (n > max) throw new FieldError(`Ensure this value is less than or equal to ${max}.`);
  if (n < min) throw new FieldError(`Ensure this value is greater than or equal to ${min}.`);
  return n;
}

function toText(value: unknown, field: Field): string {
  if (typeof value !== 'string' && typeof value !== 'number') throw new FieldError('Not a valid string.');
  const text = String(value).trim(); // DRF CharField trims by default
  if (text === '' && !field.blank) throw new FieldError('This field may not be blank.');
  if (field.maxLength !== undefined && text.length > field.maxLength) {
    throw new FieldError(`Ensure this field has no more than ${field.maxLength} characters.`);
  }
  return text;
}

function toBoolean(value: unknown): boolean {
  if (value === true || value === 1) return true;
  if (value === false || value === 0) return false;
  if (typeof value === 'string' && TRUE_TEXT.has(value.toLowerCase())) return true;
  if (typeof value === 'string' && FALSE_TEXT.has(value.toLowerCase())) return false;
  throw new FieldError('Must be a valid boolean.');
}

function toFloat(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new FieldError('A valid number is required.');
  return n;
}

/** DRF renders datetimes as ISO 8601 in UTC with 'Z' and microseconds only when non-zero. */
function formatDateTime(epochMs: number, micros = ''): string {
  const fraction = /^0*$/.test(micros) ? '' : `.${micros.padEnd(6, '0')}`;
  return `${new Date(epochMs).toISOString().slice(0, 19)}${fraction}Z`;
}

function now(): string {
  const ms = Date.now();
  return formatDateTime(ms, String(ms % 1000).padStart(3, '0'));
}

/** Django's parse_datetime; naive values are taken as UTC (the double's TIME_ZONE). */
function toDateTime(value: unknown): string {
  const m = typeof value === 'string' ? ISO_DATETIME.exec(value.trim()) : null;
  const parts = (m?.slice(1, 7) ?? []).map((part) => Number(part ?? 0));
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = parts;
  const wallClock = Date.UTC(year, month - 1, day, hour, minute, second);
  const date = new Date(wallClock);
  // Date.UTC rolls 02-30 over into March; Django refuses such dates with the same message as a bad format.
  const real = date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
  if (!m || !real || hour > 23 || minute > 59 || second > 59) throw new FieldError(DATETIME_ERROR);
  return formatDateTime(wallClock - zoneOffsetMinutes(m[8]) * 60_000, m[7] ?? '');
}

/** 'Z', '+HH', '+HHMM' or '+HH:MM' as minutes east of UTC. */
function zoneOffsetMinutes(zone: string | undefined): number {
  if (zone === undefined || zone.toUpperCase() === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || 0);
  return zone.startsWith('-') ? -minutes : minutes;
}

function toUuid(value: unknown): string | undefined {
  const m = typeof value === 'string' ? UUID_TEXT.exec(value) : null;
  return m ? m.slice(1, 6).join('-').toLowerCase() : undefined;
}

function convert(field: Field, value: unknown): unknown {
  if (value === null) {
    if (field.nullable) return null;
    throw new FieldError('This field may not be null.');
  }
  switch (field.kind) {
    case 'int':
    case 'bigint':
      return toInteger(value, field);
    case 'float':
      return toFloat(value);
    case 'bool':
      return toBoolean(value);
    case 'string':
      return toText(value, field);
    case 'choice':
      if (
        (typeof value === 'string' || typeof value === 'number') &&
        field.choices?.includes(String(value))
      ) {
        return String(value);
      }
      throw new FieldError(`"${String(value)}" is not a valid choice.`);
    case 'datetime':
      return toDateTime(value);
    case 'uuid': {
      const uuid = toUuid(value);
      if (uuid === undefined) throw new FieldError('Must be a valid UUID.');
      return uuid;
    }
    default:
      return value; // json, and relations resolved by the table that owns them
  }
}

/** Field-level validation of a serializer: every field is checked and every error reported at once. */
function readFields(spec: Record<string, Field>, body: Body, mode: Mode): { values: Body; errors: Errors } {
  const values: Body = {};
  const errors: Errors = {};
  for (const [name, field] of Object.entries(spec)) {
    if (!Object.hasOwn(body, name)) {
      if (field.required && mode !== 'patch') errors[name] = ['This field is required.'];
      else if (mode === 'create') values[name] = field.default ? field.default() : null;
      continue;
    }
    try {
      values[name] = convert(field, body[name]);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      errors[name] = [error.message];
    }
  }
  return { values, errors };
}

/** A UniqueValidator; `self` is the row being updated, which does not collide with itself. */
function checkUnique<K, T>(
  errors: Errors,
  field: string,
  values: Body,
  index: Map<K, T>,
  self: T | undefined,
) {
  if (errors[field] || !Object.hasOwn(values, field)) return;
  const other = index.get(values[field] as K);
  if (other !== undefined && other !== self) {
    errors[field] = [UNIQUE_MESSAGES[field] ?? `${field} must be unique.`];
  }
}

const UNIQUE_MESSAGES: Record<string, string> = {
  run_number: 'run with this run number already exists.',
  stf_filename: 'stf file with this stf filename already exists.',
  tf_filename: 'fast mon file with this tf filename already exists.',
  instance_name: 'system agent with this instance name already exists.',
  subscriber_name: 'subscriber with this subscriber name already exists.',
};

const hasErrors = (errors: Errors) => Object.keys(errors).length > 0;

/** Python's name for a JSON value's type, as DRF prints it in type errors. */
function pythonType(value: unknown): string {
  if (value === null) return 'NoneType';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return { string: 'str', boolean: 'bool', object: 'dict' }[typeof value as string] ?? typeof value;
}

/** A serializer given something other than a JSON object as its data. */
function notADictionary(value: unknown): Errors | undefined {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return undefined;
  return { non_field_errors: [`Invalid data. Expected a dictionary, but got ${pythonType(value)}.`] };
}

// ---------------------------------------------------------------------------------------------------------
// Model specs (docs/testbed-interface.md, "Run, StfFile and FastMonFile"), in model field order.

const FILE_STATUSES: readonly FileStatus[] = ['registered', 'processing', 'processed', 'failed', 'done'];
const AGENT_STATUSES: readonly AgentStatus[] = ['UNKNOWN', 'OK', 'WARNING', 'ERROR', 'EXITED'];
const OPERATIONAL_STATES: readonly OperationalState[] = ['STARTING', 'READY', 'PROCESSING', 'EXITED'];
const AGENT_TYPES = [
  'daqsim',
  'data',
  'processing',
  'fastmon',
  'workflow_runner',
  'monitor',
  'sse_sender',
  'sse_receiver',
  'test',
  'other',
];

const optionalText = (maxLength?: number): Field => ({
  kind: 'string',
  nullable: true,
  blank: true,
  maxLength,
});
const optional = (kind: Field['kind']): Field => ({ kind, nullable: true });
const counter: Field = { kind: 'int', default: () => 0 };

const RUN_FIELDS: Record<string, Field> = {
  run_number: { kind: 'int', required: true },
  start_time: { kind: 'datetime', required: true },
  end_time: optional('datetime'),
  run_conditions: optional('json'),
};

const STF_FIELDS: Record<string, Field> = {
  run: { kind: 'ref', required: true },
  machine_state: { kind: 'string', maxLength: 64, default: () => 'physics' },
  stf_filename: { kind: 'string', maxLength: 255, required: true },
  file_size_bytes: optional('bigint'),
  checksum: optionalText(64),
  status: { kind: 'choice', choices: FILE_STATUSES, default: () => 'registered' },
  metadata: optional('json'),
  workflow_id: optional('uuid'),
  daq_state: optionalText(20),
  daq_substate: optionalText(20),
  workflow_status: optionalText(30),
  tf_count: optional('int'),
};

const FASTMON_FIELDS: Record<string, Field> = {
  stf_file: { kind: 'ref', required: true },
  tf_filename: { kind: 'string', maxLength: 255, required: true },
  // Sizes are bytes: the double rejects negative ones although the bigint column alone would take them.
  file_size_bytes: { kind: 'bigint', nullable: true, min: 0 },
  checksum: optionalText(64),
  status: { kind: 'choice', choices: FILE_STATUSES, default: () => 'registered' },
  metadata: optional('json'),
  tf_count: optional('int'),
  tf_first: optional('int'),
  tf_last: optional('int'),
};

const AGENT_FIELDS: Record<string, Field> = {
  instance_name: { kind: 'string', maxLength: 100, required: true },
  agent_type: { kind: 'choice', choices: AGENT_TYPES, required: true },
  description: { kind: 'string', blank: true, default: () => '' },
  status: { kind: 'choice', choices: AGENT_STATUSES, default: () => 'UNKNOWN' },
  last_heartbeat: optional('datetime'),
  agent_url: optionalText(200),
  workflow_enabled: { kind: 'bool', default: () => true },
  current_stf_count: counter,
  total_stf_processed: counter,
  last_stf_processed: optional('datetime'),
  pid: optional('int'),
  hostname: optionalText(255),
  operational_state: { kind: 'choice', choices: OPERATIONAL_STATES, nullable: true },
  namespace: optionalText(100),
  metadata: optional('json'),
};

// The heartbeat view reads request.data itself; these only type-check the keys it stores.
const HEARTBEAT_FIELDS: Record<string, Field> = {
  instance_name: { kind: 'string', maxLength: 100 },
  agent_type: { kind: 'string', maxLength: 20 }, // choices are not validated on this path (see the heartbeat endpoint)
  description: { kind: 'string', blank: true },
  status: { kind: 'choice', choices: AGENT_STATUSES },
  agent_url: optionalText(200),
  namespace: optionalText(100),
  workflow_enabled: { kind: 'bool' },
  operational_state: { kind: 'choice', choices: OPERATIONAL_STATES, nullable: true },
  pid: optional('int'),
  hostname: optionalText(255),
};

const SUBSCRIBER_FIELDS: Record<string, Field> = {
  subscriber_name: { kind: 'string', maxLength: 255, required: true },
  fraction: optional('float'),
  description: optionalText(),
  is_active: { kind: 'bool', default: () => true },
  delivery_type: { kind: 'choice', choices: ['activemq', 'sse'], default: () => 'activemq' },
  client_ip: optionalText(39),
  client_location: optionalText(255),
  connected_at: optional('datetime'),
  disconnected_at: optional('datetime'),
  last_activity: optional('datetime'),
  message_filters: optional('json'),
  messages_received: counter,
  messages_sent: counter,
  messages_dropped: counter,
};

// AppLog (models.AppLog): every field required except level (default NOTSET) and extra_data.
const APPLOG_FIELDS: Record<string, Field> = {
  app_name: { kind: 'string', maxLength: 100, required: true },
  instance_name: { kind: 'string', maxLength: 100, required: true },
  timestamp: { kind: 'datetime', required: true },
  level: { kind: 'int', default: () => 0 },
  levelname: { kind: 'string', maxLength: 50, required: true },
  message: { kind: 'string', required: true },
  module: { kind: 'string', maxLength: 255, required: true },
  funcname: { kind: 'string', maxLength: 255, required: true },
  lineno: { kind: 'int', required: true },
  process: { kind: 'int', required: true },
  thread: { kind: 'bigint', required: true },
  extra_data: optional('json'),
};
/** AppLog.level's choices: Python logging's NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL. */
const APPLOG_LEVELS = [0, 10, 20, 30, 40, 50];

const DEFINITION_FIELDS: Record<string, Field> = {
  workflow_name: { kind: 'string', maxLength: 200, required: true },
  version: { kind: 'string', maxLength: 50, required: true },
  workflow_type: { kind: 'string', maxLength: 100, required: true },
  definition: { kind: 'string', maxLength: 5000, required: true },
  parameter_values: { kind: 'json', default: () => ({}) },
  created_by: { kind: 'string', maxLength: 100, required: true },
};

const EXECUTION_FIELDS: Record<string, Field> = {
  execution_id: { kind: 'string', maxLength: 100, required: true },
  workflow_definition: { kind: 'ref', required: true },
  namespace: optionalText(100),
  parameter_values: { kind: 'json', required: true },
  performance_metrics: optional('json'),
  status: { kind: 'string', maxLength: 50, default: () => 'pending' },
  start_time: { kind: 'datetime', required: true },
  end_time: optional('datetime'),
  executed_by: { kind: 'string', maxLength: 100, required: true },
};

const STALE_AGENT_MS = 3 * 60_000; // SystemAgent.mark_stale_agents

// ---------------------------------------------------------------------------------------------------------
// Tables: rows plus the indexes that keep every POST O(1).

type Outcome<T> = { row: T } | { errors: Errors };
type Listed<T> = { rows: readonly T[] } | { errors: Errors };

/**
 * The documented range rules (monitor:docs/TFSLICE.md, FASTMON_FILES.md), checked for the fields that are
 * set. The monitor documents rather than validates them; the double enforces them so a wrong sample fails.
 */
function rangeErrors(
  row: Pick<FastMonFileRow, 'tf_first' | 'tf_last' | 'tf_count'>,
  stfTfCount: number | null,
) {
  const { tf_first: first, tf_last: last, tf_count: count } = row;
  const errors: string[] = [];
  if (first !== null && first < 0) errors.push('tf_first must be >= 0 (0 <= tf_first <= tf_last).');
  if (last !== null && last < 0) errors.push('tf_last must be >= 0 (0 <= tf_first <= tf_last).');
  if (first !== null && last !== null && first > last) {
    errors.push('tf_first must be <= tf_last (0 <= tf_first <= tf_last).');
  }
  if (first !== null && last !== null && count !== null && count !== last - first + 1) {
    errors.push('tf_count must equal tf_last - tf_first + 1.');
  }
  if (last !== null && stfTfCount !== null && last >= stfTfCount) {
    errors.push(`tf_last must be < the STF tf_count (${stfTfCount}).`);
  }
  return errors;
}

// PersistentState hands out agent ids from 1 and run numbers from 100010 (docs/testbed-interface.md, "Agent identity and heartbeats").
const freshSequences = () => ({
  runId: 1,
  agentRowId: 1,
  subscriberId: 1,
  agentId: 1,
  runNumber: 100010,
  appLogId: 1,
  definitionId: 1,
  executionSequence: 1,
});

class Tables {
  readonly runs: RunRow[] = [];
  readonly stfFiles: StfFileRow[] = [];
  readonly fastmonFiles: FastMonFileRow[] = [];
  readonly agents: SystemAgentRow[] = [];
  readonly subscribers: SubscriberRow[] = [];
  readonly heartbeats: HeartbeatRecord[] = [];
  readonly appLogs: AppLogRow[] = [];
  readonly workflowDefinitions: WorkflowDefinitionRow[] = [];
  readonly workflowExecutions: WorkflowExecutionRow[] = [];

  private readonly executionById = new Map<string, WorkflowExecutionRow>();
  private readonly runById = new Map<number, RunRow>();
  private readonly runByNumber = new Map<number, RunRow>();
  private readonly stfById = new Map<string, StfFileRow>();
  private readonly stfByName = new Map<string, StfFileRow>();
  private readonly fastmonById = new Map<string, FastMonFileRow>();
  private readonly fastmonByName = new Map<string, FastMonFileRow>();
  private readonly fastmonByParent = new Map<StfFileRow, Set<FastMonFileRow>>();
  private readonly parentOf = new Map<FastMonFileRow, StfFileRow>();
  private readonly agentByName = new Map<string, SystemAgentRow>();
  private readonly subscriberByName = new Map<string, SubscriberRow>();
  private sequences = freshSequences();

  /** `retainFastmon`: see MonitorDoubleOptions.retainFastmonFiles. */
  constructor(private readonly retainFastmon = Number.POSITIVE_INFINITY) {
    if (!(retainFastmon >= 1))
      throw new RangeError(`retainFastmonFiles must be at least 1, got ${retainFastmon}`);
  }

  reset(): void {
    const lists = [
      this.runs,
      this.stfFiles,
      this.fastmonFiles,
      this.agents,
      this.subscribers,
      this.heartbeats,
      this.appLogs,
      this.workflowDefinitions,
      this.workflowExecutions,
    ];
    for (const list of lists) list.length = 0;
    this.executionById.clear();
    const indexes: Map<unknown, unknown>[] = [this.runById, this.runByNumber, this.stfById, this.stfByName];
    indexes.push(this.fastmonById, this.fastmonByName, this.fastmonByParent, this.parentOf);
    indexes.push(this.agentByName, this.subscriberByName);
    for (const index of indexes) index.clear();
    this.sequences = freshSequences();
  }

  nextAgentId = () => this.sequences.agentId++;
  nextExecutionSequence = () => this.sequences.executionSequence++;

  // AppLog: ModelViewSet, AllowAny, one record per POST (docs/interop.md).

  saveAppLog(body: Body): Outcome<AppLogRow> {
    const { values, errors } = readFields(APPLOG_FIELDS, body, 'create');
    if (!errors.level && !APPLOG_LEVELS.includes(values.level as number)) {
      errors.level = [`"${String(body.level)}" is not a valid choice.`];
    }
    if (hasErrors(errors)) return { errors };
    const row = { id: this.sequences.appLogId++, ...values } as unknown as AppLogRow;
    this.appLogs.push(row);
    return { row };
  }

  // Workflow definitions and executions, as the workflow runner writes them.

  definitionByPk = (pk: string) => this.workflowDefinitions.find((row) => String(row.id) === pk);

  saveDefinition(body: Body, mode: Mode, row?: WorkflowDefinitionRow): Outcome<WorkflowDefinitionRow> {
    const { values, errors } = readFields(DEFINITION_FIELDS, body, mode);
    if (hasErrors(errors)) return { errors };
    const merged = { ...row, ...values } as WorkflowDefinitionRow;
    const twin = this.workflowDefinitions.find(
      (other) =>
        other !== row && other.workflow_name === merged.workflow_name && other.version === merged.version,
    );
    if (twin)
      return { errors: { non_field_errors: ['The fields workflow_name, version must make a unique set.'] } };
    const stamp = now();
    if (row) {
      Object.assign(row, values, { updated_at: stamp });
      return { row };
    }
    const created = { id: this.sequences.definitionId++, ...values, created_at: stamp, updated_at: stamp };
    this.workflowDefinitions.push(created as unknown as WorkflowDefinitionRow);
    return { row: created as unknown as WorkflowDefinitionRow };
  }

  executionByPk = (pk: string) => this.executionById.get(pk);

  saveExecution(body: Body, mode: Mode, row?: WorkflowExecutionRow): Outcome<WorkflowExecutionRow> {
    const { values, errors } = readFields(EXECUTION_FIELDS, body, mode);
    if (!errors.workflow_definition && Object.hasOwn(values, 'workflow_definition')) {
      const pk = values.workflow_definition;
      if (!this.definitionByPk(String(pk))) {
        errors.workflow_definition = [`Invalid pk "${String(pk)}" - object does not exist.`];
      } else values.workflow_definition = Number(pk);
    }
    if (!errors.execution_id && Object.hasOwn(values, 'execution_id')) {
      const other = this.executionById.get(values.execution_id as string);
      if (other && other !== row) {
        errors.execution_id = ['workflow execution with this execution id already exists.'];
      }
    }
    if (hasErrors(errors)) return { errors };
    if (row) {
      this.executionById.delete(row.execution_id);
      Object.assign(row, values);
      this.executionById.set(row.execution_id, row);
      return { row };
    }
    const created = values as unknown as WorkflowExecutionRow;
    this.workflowExecutions.push(created);
    this.executionById.set(created.execution_id, created);
    return { row: created };
  }

  listExecutions(query: URLSearchParams): WorkflowExecutionRow[] {
    const filters = ['status', 'namespace', 'executed_by'] as const;
    return this.workflowExecutions.filter((row) =>
      filters.every((name) => !query.get(name) || row[name] === query.get(name)),
    );
  }

  listenerError(body: Record<string, unknown>): string | null {
    const lifecycle = ['run_imminent', 'start_run', 'pause_run', 'resume_run', 'end_run'];
    const id = body.execution_id;
    if (!lifecycle.includes(String(body.msg_type)) || id === undefined || id === null || id === '')
      return null;
    return this.executionById.has(String(id))
      ? null
      : `WorkflowExecution matching query does not exist (execution_id ${String(id)}, ${String(body.msg_type)})`;
  }
  nextRunNumber = () => this.sequences.runNumber++;

  // Runs.

  runByPk = (pk: string) => (/^\d+$/.test(pk) ? this.runById.get(Number(pk)) : undefined);

  saveRun(body: Body, mode: Mode, row?: RunRow): Outcome<RunRow> {
    const { values, errors } = readFields(RUN_FIELDS, body, mode);
    checkUnique(errors, 'run_number', values, this.runByNumber, row);
    if (hasErrors(errors)) return { errors };
    if (!row) {
      const created = { run_id: this.sequences.runId++, ...values } as unknown as RunRow;
      this.runs.push(created);
      this.runById.set(created.run_id, created);
      this.runByNumber.set(created.run_number, created);
      return { row: created };
    }
    this.runByNumber.delete(row.run_number);
    Object.assign(row, values);
    this.runByNumber.set(row.run_number, row);
    return { row };
  }

  // STF files.

  stfByPk = (pk: string) => this.stfById.get(toUuid(pk) ?? '');

  /** PrimaryKeyRelatedField: an integer-like pk of an existing Run. */
  private resolveRun(values: Body, errors: Errors): void {
    if (errors.run || !Object.hasOwn(values, 'run')) return;
    const pk = values.run;
    const integral =
      (typeof pk === 'number' && Number.isInteger(pk)) || (typeof pk === 'string' && /^\d+$/.test(pk));
    if (!integral) {
      errors.run = [`Incorrect type. Expected pk value, received ${pythonType(pk)}.`];
      return;
    }
    const run = this.runById.get(Number(pk));
    if (run) values.run = run.run_id;
    else errors.run = [`Invalid pk "${String(pk)}" - object does not exist.`];
  }

  saveStfFile(body: Body, mode: Mode, row?: StfFileRow): Outcome<StfFileRow> {
    const { values, errors } = readFields(STF_FIELDS, body, mode);
    this.resolveRun(values, errors);
    checkUnique(errors, 'stf_filename', values, this.stfByName, row);
    if (hasErrors(errors)) return { errors };
    if (!row) {
      const created = { file_id: randomUUID(), ...values, created_at: now() } as unknown as StfFileRow;
      this.stfFiles.push(created);
      this.stfById.set(created.file_id, created);
      this.stfByName.set(created.stf_filename, created);
      return { row: created };
    }
    this.stfByName.delete(row.stf_filename);
    Object.assign(row, values);
    this.stfByName.set(row.stf_filename, row);
    for (const child of this.fastmonByParent.get(row) ?? []) child.stf_file = row.stf_filename;
    return { row };
  }

  listStfFiles(query: URLSearchParams): Listed<StfFileRow> {
    const errors: Errors = {};
    const name = query.get('stf_filename') || undefined;
    const runNumber = query.get('run_number') || undefined;
    const status = choiceFilter(query, 'status', FILE_STATUSES, errors);
    const workflowText = query.get('workflow_id') || undefined;
    const workflowId = workflowText === undefined ? undefined : toUuid(workflowText);
    if (runNumber !== undefined && !/^\d+$/.test(runNumber)) errors.run_number = ['Enter a number.'];
    if (workflowText !== undefined && workflowId === undefined) errors.workflow_id = ['Enter a valid UUID.'];
    if (hasErrors(errors)) return { errors };
    const runId =
      runNumber === undefined ? undefined : (this.runByNumber.get(Number(runNumber))?.run_id ?? -1);
    const candidates = name === undefined ? this.stfFiles : [this.stfByName.get(name)].filter((row) => !!row);
    const rows = candidates.filter(
      (row) =>
        (runId === undefined || row.run === runId) &&
        (status === undefined || row.status === status) &&
        (workflowId === undefined || row.workflow_id === workflowId),
    );
    return { rows };
  }

  // FastMon files (TF samples).

  fastmonByPk = (pk: string) => this.fastmonById.get(toUuid(pk) ?? '');

  /** SlugRelatedField(slug_field='stf_filename'), accepted since monitor:bf27fbc. */
  private resolveStf(values: Body, errors: Errors): StfFileRow | undefined {
    if (errors.stf_file || !Object.hasOwn(values, 'stf_file')) return undefined;
    const name = values.stf_file;
    if (typeof name !== 'string' && typeof name !== 'number') {
      errors.stf_file = ['Invalid value.'];
      return undefined;
    }
    const parent = this.stfByName.get(String(name));
    if (!parent) errors.stf_file = [`Object with stf_filename=${String(name)} does not exist.`];
    return parent;
  }

  saveFastmonFile(body: Body, mode: Mode, row?: FastMonFileRow): Outcome<FastMonFileRow> {
    const { values, errors } = readFields(FASTMON_FIELDS, body, mode);
    const newParent = this.resolveStf(values, errors);
    checkUnique(errors, 'tf_filename', values, this.fastmonByName, row);
    if (hasErrors(errors)) return { errors };
    const parent = newParent ?? (row ? this.parentOf.get(row) : undefined);
    if (!parent) throw new Error('monitor double: FastMonFile without a parent StfFile');
    const merged = { ...row, ...values } as FastMonFileRow;
    const ranges = rangeErrors(merged, parent.tf_count);
    if (ranges.length > 0) return { errors: { non_field_errors: ranges } };
    values.stf_file = parent.stf_filename;
    if (!row) {
      const stamp = now();
      const created = { tf_file_id: randomUUID(), ...values, created_at: stamp, updated_at: stamp };
      return { row: this.indexFastmon(created as unknown as FastMonFileRow, parent) };
    }
    this.unindexFastmon(row);
    Object.assign(row, values, { updated_at: now() });
    return { row: this.indexFastmon(row, parent) };
  }

  /**
   * The proposed bulk endpoint's rule for one row: the single POST's validation, except that a row whose
   * only fault is an existing tf_filename comes back as that existing row, unchanged.
   */
  createOrFindFastmonFile(body: Body): { row: FastMonFileRow; created: boolean } | { errors: Errors } {
    const outcome = this.saveFastmonFile(body, 'create');
    if (!('errors' in outcome)) return { row: outcome.row, created: true };
    const { tf_filename: nameErrors, ...others } = outcome.errors;
    const existing = this.fastmonByName.get(String(body.tf_filename).trim());
    const onlyTaken = nameErrors?.[0] === UNIQUE_MESSAGES.tf_filename && !hasErrors(others);
    return onlyTaken && existing ? { row: existing, created: false } : outcome;
  }

  private indexFastmon(row: FastMonFileRow, parent: StfFileRow): FastMonFileRow {
    if (!this.fastmonById.has(row.tf_file_id)) {
      this.fastmonFiles.push(row);
      this.forgetOldestFastmon();
    }
    this.fastmonById.set(row.tf_file_id, row);
    this.fastmonByName.set(row.tf_filename, row);
    this.parentOf.set(row, parent);
    const siblings = this.fastmonByParent.get(parent) ?? new Set();
    this.fastmonByParent.set(parent, siblings.add(row));
    return row;
  }

  private unindexFastmon(row: FastMonFileRow): void {
    this.fastmonByName.delete(row.tf_filename);
    const parent = this.parentOf.get(row);
    const siblings = parent ? this.fastmonByParent.get(parent) : undefined;
    siblings?.delete(row);
    if (parent && siblings?.size === 0) this.fastmonByParent.delete(parent);
  }

  /** Beyond the retention limit, drops the oldest rows, a batch at a time so the list is cut rarely. */
  private forgetOldestFastmon(): void {
    const excess = this.fastmonFiles.length - this.retainFastmon;
    if (excess < Math.max(1, Math.floor(this.retainFastmon / 32))) return;
    for (const old of this.fastmonFiles.slice(0, excess)) {
      this.unindexFastmon(old);
      this.parentOf.delete(old);
      this.fastmonById.delete(old.tf_file_id);
    }
    this.fastmonFiles.splice(0, excess);
  }

  deleteFastmonFile(row: FastMonFileRow): void {
    this.unindexFastmon(row);
    this.parentOf.delete(row);
    this.fastmonById.delete(row.tf_file_id);
    this.fastmonFiles.splice(this.fastmonFiles.indexOf(row), 1);
  }

  listFastmonFiles(query: URLSearchParams): Listed<FastMonFileRow> {
    const errors: Errors = {};
    const tfName = query.get('tf_filename') || undefined;
    const stfName = query.get('stf_filename') || undefined;
    const status = choiceFilter(query, 'status', FILE_STATUSES, errors);
    if (hasErrors(errors)) return { errors };
    let candidates: Iterable<FastMonFileRow> = this.fastmonFiles;
    if (tfName !== undefined) candidates = [this.fastmonByName.get(tfName)].filter((row) => !!row);
    else if (stfName !== undefined) {
      const parent = this.stfByName.get(stfName);
      candidates = parent ? (this.fastmonByParent.get(parent) ?? []) : [];
    }
    const rows = [...candidates].filter(
      (row) =>
        (stfName === undefined || row.stf_file === stfName) &&
        (status === undefined || row.status === status),
    );
    return { rows };
  }

  // System agents and subscribers.

  createAgent(body: Body): Outcome<SystemAgentRow> {
    const { values, errors } = readFields(AGENT_FIELDS, body, 'create');
    checkUnique(errors, 'instance_name', values, this.agentByName, undefined);
    if (hasErrors(errors)) return { errors };
    const stamp = now();
    const row = { id: this.sequences.agentRowId++, ...values, created_at: stamp, updated_at: stamp };
    return { row: this.indexAgent(row as unknown as SystemAgentRow) };
  }

  private indexAgent(row: SystemAgentRow): SystemAgentRow {
    this.agents.push(row);
    this.agentByName.set(row.instance_name, row);
    return row;
  }

  /**
   * The heartbeat view: update_or_create keyed on instance_name. Its defaults reset agent_type, description,
   * status, agent_url and namespace on every call when omitted; the optional keys change only when sent.
   */
  heartbeat(body: Body, receivedAt: number): { status: number; body: unknown } {
    if (!body.instance_name) return { status: 400, body: { error: 'instance_name is required' } };
    const { values, errors } = readFields(HEARTBEAT_FIELDS, body, 'patch');
    if (hasErrors(errors)) return { status: 400, body: errors };
    const stamp = now();
    const name = values.instance_name as string;
    const defaults = {
      agent_type: values.agent_type ?? 'other',
      description: values.description ?? '',
      status: values.status ?? 'OK',
      agent_url: values.agent_url ?? null,
      namespace: values.namespace ?? null,
      last_heartbeat: stamp,
      updated_at: stamp,
    };
    const optionalKeys = ['workflow_enabled', 'operational_state', 'pid', 'hostname'] as const;
    const sent = Object.fromEntries(
      optionalKeys.filter((key) => key in values).map((key) => [key, values[key]]),
    );
    let row = this.agentByName.get(name);
    const created = !row;
    if (row) Object.assign(row, defaults, sent);
    else {
      const fresh = readFields(AGENT_FIELDS, { instance_name: name, agent_type: 'other' }, 'create').values;
      row = {
        id: this.sequences.agentRowId++,
        ...fresh,
        ...defaults,
        ...sent,
        created_at: stamp,
      } as SystemAgentRow;
      this.indexAgent(row);
    }
    this.markStaleAgents(receivedAt);
    const status = created ? 201 : 200;
    this.heartbeats.push({ receivedAt, status, body });
    return { status, body: row };
  }

  private markStaleAgents(nowMs: number): void {
    for (const agent of this.agents) {
      const last = agent.last_heartbeat ? Date.parse(agent.last_heartbeat) : Number.NaN;
      if (agent.status !== 'EXITED' && nowMs - last > STALE_AGENT_MS) agent.status = 'EXITED';
    }
  }

  createSubscriber(body: Body): Outcome<SubscriberRow> {
    const { values, errors } = readFields(SUBSCRIBER_FIELDS, body, 'create');
    checkUnique(errors, 'subscriber_name', values, this.subscriberByName, undefined);
    if (hasErrors(errors)) return { errors };
    const stamp = now();
    const row = {
      subscriber_id: this.sequences.subscriberId++,
      ...values,
      created_at: stamp,
      updated_at: stamp,
    };
    const subscriber = row as unknown as SubscriberRow;
    this.subscribers.push(subscriber);
    this.subscriberByName.set(subscriber.subscriber_name, subscriber);
    return { row: subscriber };
  }
}

/** django-filter ChoiceFilter: empty means no filter, an unknown value is a 400. */
function choiceFilter(query: URLSearchParams, name: string, choices: readonly string[], errors: Errors) {
  const value = query.get(name) || undefined;
  if (value !== undefined && !choices.includes(value)) {
    errors[name] = [`Select a valid choice. ${value} is not one of the available choices.`];
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP: routes, authentication, parsing, pagination, faults.

interface Reply {
  status: number;
  body?: unknown;
  /** Non-JSON payload (redirects, injected HTML error pages). */
  text?: string;
  headers?: Record<string, string>;
}

interface Call {
  params: string[];
  query: URLSearchParams;
  body: Body;
  /** Absolute URL of the request, for pagination links. */
  self: URL;
}

type Handler = (call: Call) => Reply;

interface Route {
  pattern: RegExp;
  /** 'always': IsAuthenticated (state/*); 'writes': IsAuthenticatedOrReadOnly; 'none': AllowAny (logs). */
  auth: 'always' | 'writes' | 'none';
  methods: Partial<Record<string, Handler>>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
const NOT_FOUND: Reply = { status: 404, body: { detail: 'Not found.' } };

const json = (status: number, body?: unknown): Reply => ({ status, body });
const saved = <T>(outcome: Outcome<T>, status: number): Reply =>
  'errors' in outcome ? json(400, outcome.errors) : json(status, outcome.row);

/** Opt-in LimitOffsetPagination (views._OptInLimitPagination): only when ?limit= is a positive integer. */
function paginate(rows: readonly unknown[], call: Call): Reply {
  const limit = positiveInt(call.query.get('limit'));
  if (limit === undefined || limit === 0) return json(200, rows);
  const offset = positiveInt(call.query.get('offset')) ?? 0;
  const link = (newOffset: number | undefined) => {
    const url = new URL(call.self);
    url.searchParams.set('limit', String(limit));
    if (newOffset === undefined) url.searchParams.delete('offset');
    else url.searchParams.set('offset', String(newOffset));
    url.searchParams.sort(); // DRF's replace_query_param sorts the query
    return url.toString();
  };
  return json(200, {
    count: rows.length,
    next: offset + limit >= rows.length ? null : link(offset + limit),
    previous: offset <= 0 ? null : link(offset - limit <= 0 ? undefined : offset - limit),
    results: rows.slice(offset, offset + limit),
  });
}

function positiveInt(text: string | null): number | undefined {
  return text !== null && /^\s*\+?\d+\s*$/.test(text) ? Number.parseInt(text, 10) : undefined;
}

function listed<T>(outcome: Listed<T>, call: Call): Reply {
  return 'errors' in outcome ? json(400, outcome.errors) : paginate(outcome.rows, call);
}

/** A ModelViewSet detail route: lookup, then retrieve / partial_update / update / destroy. */
function detail<T>(
  model: string,
  find: (pk: string) => T | undefined,
  save: (body: Body, mode: Mode, row: T) => Outcome<T>,
  destroy?: (row: T) => void,
): Partial<Record<string, Handler>> {
  const missing: Reply = { status: 404, body: { detail: `No ${model} matches the given query.` } };
  const withRow = (action: (row: T, call: Call) => Reply) => (call: Call) => {
    const row = find(call.params[0] ?? '');
    return row === undefined ? missing : action(row, call);
  };
  const methods: Partial<Record<string, Handler>> = {
    GET: withRow((row) => json(200, row)),
    PUT: withRow((row, call) => saved(save(call.body, 'put', row), 200)),
    PATCH: withRow((row, call) => saved(save(call.body, 'patch', row), 200)),
  };
  if (destroy) {
    methods.DELETE = withRow((row) => {
      destroy(row);
      return { status: 204 };
    });
  }
  return methods;
}

// PROPOSED, not in swf-monitor (docs/bulk-posting.md): POST /api/fastmon-files/bulk/, on with proposedBulk.

/** The most rows one bulk request may carry. */
export const BULK_MAX_ROWS = 500;

/** One row's outcome: 201 and the new row, 200 and the row that already had this tf_filename, or 400. */
export type BulkResult =
  | { status: 200 | 201; body: FastMonFileRow }
  | { status: 400; body: Record<string, string[]> };

/**
 * `{"rows": [...]}` → 200 `{"results": [...]}`, one result per row, in order. Rows are validated and saved
 * one by one with the single POST's rules, and a rejected row does not undo the others: an agent that
 * redelivers a batch must get its new rows created beside those it already wrote. The envelope is a DRF
 * ListField(max_length=BULK_MAX_ROWS); its errors reject the whole request before any row is read.
 */
function bulkCreateFastmonFiles(t: Tables, body: Body): Reply {
  const rows = body.rows;
  let error: string | undefined;
  if (!Object.hasOwn(body, 'rows')) error = 'This field is required.';
  else if (rows === null) error = 'This field may not be null.';
  else if (!Array.isArray(rows)) error = `Expected a list of items but got type "${pythonType(rows)}".`;
  else if (rows.length > BULK_MAX_ROWS) {
    error = `Ensure this field has no more than ${BULK_MAX_ROWS} elements.`;
  }
  if (error !== undefined) return json(400, { rows: [error] });
  const results = (rows as unknown[]).map((row): BulkResult => {
    const invalid = notADictionary(row);
    if (invalid) return { status: 400, body: invalid };
    const outcome = t.createOrFindFastmonFile(row as Body);
    if ('errors' in outcome) return { status: 400, body: outcome.errors };
    return { status: outcome.created ? 201 : 200, body: outcome.row };
  });
  return json(200, { results });
}

function routes(t: Tables, proposedBulk: boolean): Route[] {
  const pk = '([^/.]+)'; // DRF's default lookup_value_regex
  const route = (path: string, auth: Route['auth'], methods: Route['methods']): Route => ({
    pattern: new RegExp(`^/api/${path}/$`),
    auth,
    methods,
  });
  return [
    route('state/next-agent-id', 'always', {
      POST: () => json(200, { agent_id: t.nextAgentId(), status: 'success' }),
    }),
    route('state/next-run-number', 'always', {
      POST: () => json(200, { run_number: t.nextRunNumber(), status: 'success' }),
    }),
    route('state/next-workflow-execution-id', 'always', {
      POST: () => json(200, { sequence: t.nextExecutionSequence(), status: 'success' }),
    }),
    // AppLogViewSet: AllowAny, a ModelSerializer of one object (a list is "Expected a dictionary").
    route('logs', 'none', {
      GET: () => json(200, t.appLogs),
      POST: (call) => saved(t.saveAppLog(call.body), 201),
    }),
    route('workflow-definitions', 'writes', {
      GET: () => json(200, t.workflowDefinitions),
      POST: (call) => saved(t.saveDefinition(call.body, 'create'), 201),
    }),
    route(
      `workflow-definitions/${pk}`,
      'writes',
      detail('WorkflowDefinition', t.definitionByPk, (body, mode, row) => t.saveDefinition(body, mode, row)),
    ),
    route('workflow-executions', 'writes', {
      GET: (call) => json(200, t.listExecutions(call.query)),
      POST: (call) => saved(t.saveExecution(call.body, 'create'), 201),
    }),
    route(
      `workflow-executions/${pk}`,
      'writes',
      detail('WorkflowExecution', t.executionByPk, (body, mode, row) => t.saveExecution(body, mode, row)),
    ),
    route('systemagents', 'writes', {
      GET: () => json(200, t.agents),
      POST: (call) => saved(t.createAgent(call.body), 201),
    }),
    route('systemagents/heartbeat', 'writes', { POST: (call) => t.heartbeat(call.body, Date.now()) }),
    route('subscribers', 'writes', {
      GET: () => json(200, t.subscribers),
      POST: (call) => saved(t.createSubscriber(call.body), 201),
    }),
    // Run has no filterset and no pagination: ?run_number= is silently ignored and every run comes back.
    route('runs', 'writes', {
      GET: () => json(200, t.runs),
      POST: (call) => saved(t.saveRun(call.body, 'create'), 201),
    }),
    route(
      `runs/${pk}`,
      'writes',
      detail('Run', t.runByPk, (body, mode, row) => t.saveRun(body, mode, row)),
    ),
    route('stf-files', 'writes', {
      GET: (call) => listed(t.listStfFiles(call.query), call),
      POST: (call) => saved(t.saveStfFile(call.body, 'create'), 201),
    }),
    route(
      `stf-files/${pk}`,
      'writes',
      detail('StfFile', t.stfByPk, (body, mode, row) => t.saveStfFile(body, mode, row)),
    ),
    route('fastmon-files', 'writes', {
      GET: (call) => listed(t.listFastmonFiles(call.query), call),
      POST: (call) => saved(t.saveFastmonFile(call.body, 'create'), 201),
    }),
    // Before the detail route, as DRF's router puts @action(detail=False) routes. Without it, 'bulk' is taken
    // for a tf_file_id: POST answers 405 and GET 404, which is what swf-monitor answers today.
    ...(proposedBulk
      ? [route('fastmon-files/bulk', 'writes', { POST: (call) => bulkCreateFastmonFiles(t, call.body) })]
      : []),
    route(
      `fastmon-files/${pk}`,
      'writes',
      detail(
        'FastMonFile',
        t.fastmonByPk,
        (body, mode, row) => t.saveFastmonFile(body, mode, row),
        (row) => t.deleteFastmonFile(row),
      ),
    ),
  ];
}

/** TokenAuthentication then the route's permission; a bad token fails even where anonymous reads are allowed. */
function authenticate(
  header: string | undefined,
  token: string,
  route: Route,
  method: string,
): Reply | undefined {
  const parts = (header ?? '').trim().split(/\s+/);
  const unauthorized = (detail: string): Reply => ({
    status: 401,
    body: { detail },
    headers: { 'WWW-Authenticate': 'Token' },
  });
  const hasTokenScheme = parts[0]?.toLowerCase() === 'token';
  if (hasTokenScheme && parts.length === 1) {
    return unauthorized('Invalid token header. No credentials provided.');
  }
  if (hasTokenScheme && parts.length > 2) {
    return unauthorized('Invalid token header. Token string should not contain spaces.');
  }
  if (hasTokenScheme && parts[1] !== token) return unauthorized('Invalid token.');
  const needsUser = route.auth === 'always' || (route.auth === 'writes' && !SAFE_METHODS.has(method));
  if (needsUser && !hasTokenScheme) return unauthorized('Authentication credentials were not provided.');
  return undefined;
}

type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

function parseBody(raw: string): Parsed | undefined {
  if (raw === '') return undefined;
  try {
    return { ok: true, value: JSON.parse(raw) };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

/** DRF's JSONParser: an empty body is {}, another media type is 415, the payload must be a JSON object. */
function requestBody(
  headers: IncomingHttpHeaders,
  parsed: Parsed | undefined,
): { body: Body } | { reply: Reply } {
  if (parsed === undefined) return { body: {} };
  const contentType = headers['content-type'] ?? '';
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    return { reply: json(415, { detail: `Unsupported media type "${contentType}" in request.` }) };
  }
  if (!parsed.ok) return { reply: json(400, { detail: `JSON parse error - ${parsed.error}` }) };
  const invalid = notADictionary(parsed.value);
  if (invalid) return { reply: json(400, invalid) };
  return { body: parsed.value as Body };
}

interface Incoming {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  parsed: Parsed | undefined;
  record: RequestRecord;
}

interface Fault extends FailRule {
  kind: 'fail' | 'hang';
  remaining: number;
}

function matches(rule: FaultMatch, incoming: Incoming): boolean {
  if (rule.method !== undefined && rule.method.toUpperCase() !== incoming.method) return false;
  if (rule.path === undefined) return true;
  if (typeof rule.path === 'string') return incoming.url.includes(rule.path);
  rule.path.lastIndex = 0;
  return rule.path.test(incoming.url);
}

function faultReply(rule: FailRule): Reply {
  const headers = rule.headers ?? {};
  if (typeof rule.body === 'string') return { status: rule.status, text: rule.body, headers };
  return {
    status: rule.status,
    body: rule.body ?? { detail: `Injected fault: HTTP ${rule.status}.` },
    headers,
  };
}

function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed || res.headersSent) return;
  const headers: Record<string, string> = { ...reply.headers };
  let payload = '';
  if (reply.text !== undefined) {
    payload = reply.text;
    headers['Content-Type'] ??= 'text/html; charset=utf-8';
  } else if (reply.body !== undefined) {
    payload = JSON.stringify(reply.body);
    headers['Content-Type'] = 'application/json';
  }
  headers['Content-Length'] = String(Buffer.byteLength(payload));
  res.writeHead(reply.status, headers);
  res.end(payload);
}

function decodePathParam(param: string): string {
  try {
    return decodeURIComponent(param);
  } catch {
    return param;
  }
}

function normalizeBasePath(basePath: string | undefined): string {
  const trimmed = (basePath ?? '').replace(/\/+$/, '');
  return trimmed === '' || trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

// ---------------------------------------------------------------------------------------------------------
// The server.

export async function startMonitorDouble(opts: MonitorDoubleOptions = {}): Promise<MonitorDouble> {
  const token = opts.token ?? randomBytes(20).toString('hex');
  const basePath = normalizeBasePath(opts.basePath);
  const tables = new Tables(opts.retainFastmonFiles);
  const table = routes(tables, opts.proposedBulk === true);
  const requests: RequestRecord[] = [];
  let faults: Fault[] = [];
  const hung = new Set<{ res: ServerResponse; release: () => void }>();
  const timers = new Set<NodeJS.Timeout>();
  let latencyMs = 0;

  function findRoute(path: string): { route: Route; params: string[] } | undefined {
    for (const route of table) {
      const m = route.pattern.exec(path);
      if (m) return { route, params: m.slice(1).map(decodePathParam) };
    }
    return undefined;
  }

  function answer(incoming: Incoming): Reply {
    const { method, url, headers } = incoming;
    const queryAt = url.indexOf('?');
    const pathname = queryAt < 0 ? url : url.slice(0, queryAt);
    const search = queryAt < 0 ? '' : url.slice(queryAt);
    if (!pathname.startsWith(`${basePath}/api/`)) return NOT_FOUND;
    const path = pathname.slice(basePath.length);
    const found = findRoute(path);
    if (!found) {
      // Django's APPEND_SLASH (DEBUG off): redirect, for POST too, which BaseAgent refuses to follow.
      if (!path.endsWith('/') && findRoute(`${path}/`)) {
        return { status: 301, text: '', headers: { Location: `${pathname}/${search}` } };
      }
      return NOT_FOUND;
    }
    const denied = authenticate(headers.authorization, token, found.route, method);
    if (denied) return denied;
    const handler = found.route.methods[method === 'HEAD' ? 'GET' : method];
    if (!handler) {
      const allow = Object.keys(found.route.methods).join(', ');
      return { status: 405, body: { detail: `Method "${method}" not allowed.` }, headers: { Allow: allow } };
    }
    // DRF parses lazily, inside the handler: routing, authentication and the method check come first.
    const read = BODY_METHODS.has(method) ? requestBody(headers, incoming.parsed) : { body: {} };
    if ('reply' in read) return read.reply;
    const self = new URL(url, `http://${headers.host ?? '127.0.0.1'}`);
    return handler({ params: found.params, query: self.searchParams, body: read.body, self });
  }

  /** The state change happens before the latency: a client that times out may still have written. */
  function respond(incoming: Incoming, res: ServerResponse, reply: Reply): void {
    incoming.record.status = reply.status;
    if (latencyMs <= 0) {
      send(res, reply);
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      send(res, reply);
    }, latencyMs);
    timers.add(timer);
  }

  function process(incoming: Incoming, res: ServerResponse): void {
    let reply: Reply;
    try {
      reply = answer(incoming);
    } catch (error) {
      reply = json(500, { detail: `monitor double error: ${(error as Error).stack ?? String(error)}` });
    }
    respond(incoming, res, reply);
  }

  function takeFault(incoming: Incoming): Fault | undefined {
    const fault = faults.find((rule) => matches(rule, incoming));
    if (fault && --fault.remaining <= 0) faults = faults.filter((rule) => rule !== fault);
    return fault;
  }

  function receive(incoming: Incoming, res: ServerResponse): void {
    requests.push(incoming.record);
    res.on('close', () => {
      if (!res.writableFinished) incoming.record.aborted = true;
    });
    const fault = takeFault(incoming);
    if (fault) incoming.record.fault = fault.kind;
    if (fault?.kind === 'fail') respond(incoming, res, faultReply(fault));
    else if (fault?.kind === 'hang') {
      const held = { res, release: () => process(incoming, res) };
      hung.add(held);
      res.on('close', () => hung.delete(held));
    } else process(incoming, res);
  }

  const server = createServer((req, res) => {
    const receivedAt = Date.now();
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      raw += chunk;
    });
    req.on('end', () => {
      const parsed = parseBody(raw);
      const method = req.method ?? 'GET';
      const url = req.url ?? '/';
      const record: RequestRecord = { method, path: url, status: 0, receivedAt };
      if (raw !== '') record.body = parsed?.ok ? parsed.value : raw;
      receive({ method, url, headers: req.headers, parsed, record }, res);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  function dropHung(): void {
    for (const held of hung) held.res.destroy();
    hung.clear();
  }

  function clearFaults(): void {
    faults = [];
    latencyMs = 0;
    const released = [...hung];
    hung.clear();
    for (const held of released) held.release();
  }

  const seeded = <T>(what: string, outcome: Outcome<T>): T => {
    if ('errors' in outcome) throw new Error(`monitor double ${what}: ${JSON.stringify(outcome.errors)}`);
    return outcome.row;
  };

  const seedRun = (runNumber: number): RunRow =>
    tables.runs.find((row) => row.run_number === runNumber) ??
    seeded('addStfFile', tables.saveRun({ run_number: runNumber, start_time: now() }, 'create'));

  let closing: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}${basePath}`,
    port,
    token,
    runs: tables.runs,
    stfFiles: tables.stfFiles,
    fastmonFiles: tables.fastmonFiles,
    agents: tables.agents,
    subscribers: tables.subscribers,
    heartbeats: tables.heartbeats,
    appLogs: tables.appLogs,
    workflowDefinitions: tables.workflowDefinitions,
    workflowExecutions: tables.workflowExecutions,
    listenerError: (body) => tables.listenerError(body),
    requests,
    clearRequests: () => {
      requests.length = 0;
    },
    reset: () => {
      faults = [];
      latencyMs = 0;
      dropHung();
      requests.length = 0;
      tables.reset();
    },
    addRun: (seed) => seeded('addRun', tables.saveRun({ start_time: now(), ...seed }, 'create')),
    addStfFile: ({ run_number, ...seed }) => {
      const run = seed.run ?? (run_number === undefined ? undefined : seedRun(run_number).run_id);
      return seeded('addStfFile', tables.saveStfFile({ ...seed, run }, 'create'));
    },
    addFastmonFile: (seed) => seeded('addFastmonFile', tables.saveFastmonFile(seed, 'create')),
    fail: (rule) => {
      faults.push({ ...rule, kind: 'fail', remaining: rule.times ?? Number.POSITIVE_INFINITY });
    },
    hang: (rule = {}) => {
      faults.push({ ...rule, status: 0, kind: 'hang', remaining: rule.times ?? Number.POSITIVE_INFINITY });
    },
    delay: (ms) => {
      latencyMs = ms;
    },
    clearFaults,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        faults = [];
        server.close(() => resolve());
        dropHung();
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
