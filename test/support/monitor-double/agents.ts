// The SystemAgent resource of the monitor double: /api/systemagents/ and the heartbeat view beside it,
// which marks agents silent for three minutes as EXITED.

import {
  type Body,
  checkUnique,
  counter,
  type Field,
  hasErrors,
  now,
  type Outcome,
  optional,
  optionalText,
  readFields,
} from './drf.js';
import { json, type Route, route, saved } from './http.js';

export type AgentStatus = 'UNKNOWN' | 'OK' | 'WARNING' | 'ERROR' | 'EXITED';
export type OperationalState = 'STARTING' | 'READY' | 'PROCESSING' | 'EXITED';

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

/** One accepted POST /api/systemagents/heartbeat/, body as sent. */
export interface HeartbeatRecord {
  receivedAt: number;
  status: 200 | 201;
  body: Record<string, unknown>;
}

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

const STALE_AGENT_MS = 3 * 60_000; // SystemAgent.mark_stale_agents

export class AgentTable {
  readonly rows: SystemAgentRow[] = [];
  readonly heartbeats: HeartbeatRecord[] = [];
  private readonly byName = new Map<string, SystemAgentRow>();
  private nextId = 1;

  reset(): void {
    this.rows.length = 0;
    this.heartbeats.length = 0;
    this.byName.clear();
    this.nextId = 1;
  }

  create(body: Body): Outcome<SystemAgentRow> {
    const { values, errors } = readFields(AGENT_FIELDS, body, 'create');
    const taken = 'system agent with this instance name already exists.';
    checkUnique(errors, 'instance_name', values, this.byName, undefined, taken);
    if (hasErrors(errors)) return { errors };
    const stamp = now();
    const row = { id: this.nextId++, ...values, created_at: stamp, updated_at: stamp };
    return { row: this.index(row as unknown as SystemAgentRow) };
  }

  private index(row: SystemAgentRow): SystemAgentRow {
    this.rows.push(row);
    this.byName.set(row.instance_name, row);
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
    let row = this.byName.get(name);
    const created = !row;
    if (row) Object.assign(row, defaults, sent);
    else {
      const fresh = readFields(AGENT_FIELDS, { instance_name: name, agent_type: 'other' }, 'create').values;
      row = { id: this.nextId++, ...fresh, ...defaults, ...sent, created_at: stamp } as SystemAgentRow;
      this.index(row);
    }
    this.markStale(receivedAt);
    const status = created ? 201 : 200;
    this.heartbeats.push({ receivedAt, status, body });
    return { status, body: row };
  }

  private markStale(nowMs: number): void {
    for (const agent of this.rows) {
      const last = agent.last_heartbeat ? Date.parse(agent.last_heartbeat) : Number.NaN;
      if (agent.status !== 'EXITED' && nowMs - last > STALE_AGENT_MS) agent.status = 'EXITED';
    }
  }

  routes(): Route[] {
    return [
      route('systemagents', 'writes', {
        GET: () => json(200, this.rows),
        POST: (call) => saved(this.create(call.body), 201),
      }),
      route('systemagents/heartbeat', 'writes', { POST: (call) => this.heartbeat(call.body, Date.now()) }),
    ];
  }
}
