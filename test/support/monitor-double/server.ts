// The monitor double's server: its public API (tables to read, seed helpers, faults) over node:http.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HeartbeatRecord, SystemAgentRow } from './agents.js';
import { now, type Outcome } from './drf.js';
import type { FastMonFileRow } from './fastmon-files.js';
import { type FailRule, type Fault, type FaultMatch, faultReply, matches } from './faults.js';
import {
  authenticate,
  BODY_METHODS,
  decodePathParam,
  json,
  NOT_FOUND,
  normalizeBasePath,
  type Parsed,
  parseBody,
  type Reply,
  type Route,
  requestBody,
  send,
} from './http.js';
import type { AppLogRow } from './logs.js';
import type { RunRow } from './runs.js';
import type { StfFileRow } from './stf-files.js';
import type { SubscriberRow } from './subscribers.js';
import { Tables } from './tables.js';
import type { WorkflowDefinitionRow, WorkflowExecutionRow } from './workflows.js';

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

interface Incoming {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  parsed: Parsed | undefined;
  record: RequestRecord;
}

export async function startMonitorDouble(opts: MonitorDoubleOptions = {}): Promise<MonitorDouble> {
  const token = opts.token ?? randomBytes(20).toString('hex');
  const basePath = normalizeBasePath(opts.basePath);
  const tables = new Tables(opts.retainFastmonFiles);
  const table = tables.routes(opts.proposedBulk === true);
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
    const fault = faults.find((rule) => matches(rule, incoming.method, incoming.url));
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
    tables.runs.withNumber(runNumber) ??
    seeded('addStfFile', tables.runs.save({ run_number: runNumber, start_time: now() }, 'create'));

  let closing: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}${basePath}`,
    port,
    token,
    runs: tables.runs.rows,
    stfFiles: tables.stfFiles.rows,
    fastmonFiles: tables.fastmonFiles.rows,
    agents: tables.agents.rows,
    subscribers: tables.subscribers.rows,
    heartbeats: tables.agents.heartbeats,
    appLogs: tables.appLogs.rows,
    workflowDefinitions: tables.workflows.definitions,
    workflowExecutions: tables.workflows.executions,
    listenerError: (body) => tables.workflows.listenerError(body),
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
    addRun: (seed) => seeded('addRun', tables.runs.save({ start_time: now(), ...seed }, 'create')),
    addStfFile: ({ run_number, ...seed }) => {
      const run = seed.run ?? (run_number === undefined ? undefined : seedRun(run_number).run_id);
      return seeded('addStfFile', tables.stfFiles.save({ ...seed, run }, 'create'));
    },
    addFastmonFile: (seed) => seeded('addFastmonFile', tables.fastmonFiles.save(seed, 'create')),
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
