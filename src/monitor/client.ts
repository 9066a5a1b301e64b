// swf-monitor's REST API as fastmon uses it: identity, subscriber, heartbeats, FastMonFile rows (shapes in rows.ts).

import { isFastmonError } from '../errors.js';
import type { MonitorHttp } from './http.js';
import {
  type FastMonFileAnswer,
  type NewFastMonFile,
  type NewStfFile,
  type RunAnswer,
  readAnswer,
  runRow,
  type StfFileAnswer,
} from './rows.js';

/** The heartbeat body swf-common-lib's BaseAgent sends (docs/testbed-interface.md, "Agent identity and heartbeats"); other keys are ignored. */
export interface HeartbeatBody {
  instance_name: string;
  agent_type: string;
  status: 'OK' | 'WARNING' | 'ERROR' | 'EXITED';
  description: string;
  mq_connected: boolean;
  pid: number;
  hostname: string;
  operational_state: 'STARTING' | 'READY' | 'PROCESSING' | 'EXITED';
  namespace?: string;
  workflow_enabled?: boolean;
  /** Stored by the heartbeat view (update_or_create default); fastmon sends its /metrics URL. */
  agent_url?: string;
}

export class MonitorClient {
  constructor(readonly http: MonitorHttp) {}

  /** `POST /api/state/next-agent-id/` → the global sequence number in agent names. */
  async nextAgentId(signal?: AbortSignal): Promise<number> {
    const { body } = await this.http.request('POST', '/state/next-agent-id/', { body: {}, signal });
    return readAnswer('agentId', body, 'POST /state/next-agent-id/').agent_id;
  }

  /** Subscriber row, as BaseAgent.run(); an existing row is fine. */
  async registerSubscriber(name: string, description: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.http.request('POST', '/subscribers/', {
        body: {
          subscriber_name: name,
          fraction: 1.0,
          is_active: true,
          description,
          delivery_type: 'activemq',
        },
        signal,
      });
    } catch (err) {
      if (
        isFastmonError(err, 'MONITOR_REJECTED') &&
        err.details?.status === 400 &&
        /already exists|subscriber/i.test(err.message)
      ) {
        return;
      }
      throw err;
    }
  }

  async heartbeat(body: HeartbeatBody, signal?: AbortSignal): Promise<void> {
    await this.http.request('POST', '/systemagents/heartbeat/', { body, signal });
  }

  async createFastMonFile(row: NewFastMonFile, signal?: AbortSignal): Promise<FastMonFileAnswer> {
    // tf_filename is unique: a repeated POST answers 400 and the registrar reads the row back.
    const { body } = await this.http.request('POST', '/fastmon-files/', {
      body: row,
      signal,
      idempotent: true,
    });
    return readAnswer('fastMonFile', body, 'POST /fastmon-files/');
  }

  /**
   * The Run's `run_id` for a DAQ run number, creating the row when there is none. swf-monitor's
   * Run list has no filters (docs/testbed-interface.md, "swf-monitor's REST API"): `?run_number=` is ignored and the whole table comes back, which
   * is how the original agent put every STF under the first run of the table. The run is picked
   * out here; a 400 on run_number means another producer created it meanwhile.
   */
  async ensureRun(
    runNumber: number,
    startTime: Date,
    signal?: AbortSignal,
    runConditions?: Record<string, unknown>,
  ): Promise<{ runId: number; created: boolean }> {
    const existing = await this.findRun(runNumber, signal);
    if (existing) return { runId: existing.run_id, created: false };
    try {
      const { body } = await this.http.request('POST', '/runs/', {
        body: runRow(runNumber, startTime, runConditions),
        signal,
      });
      return { runId: readAnswer('run', body, 'POST /runs/').run_id, created: true };
    } catch (err) {
      if (!alreadyExists(err, 'run_number')) throw err;
      const raced = await this.findRun(runNumber, signal);
      if (!raced) throw err;
      return { runId: raced.run_id, created: false };
    }
  }

  async findRun(runNumber: number, signal?: AbortSignal): Promise<RunAnswer | undefined> {
    const { body } = await this.http.request('GET', '/runs/', { signal });
    return readAnswer('runs', body, 'GET /runs/').find((r) => r.run_number === runNumber);
  }

  /** Registers an STF; true when created, false when a row with its name was there already. */
  async ensureStfFile(row: NewStfFile, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.http.request('POST', '/stf-files/', { body: row, signal });
      return true;
    } catch (err) {
      if (alreadyExists(err, 'stf_filename')) return false;
      throw err;
    }
  }

  /** The StfFile row with this name, or null (list shapes as for FastMonFile); `?stf_filename=` is exact. */
  async findStfFile(stfFilename: string, signal?: AbortSignal): Promise<StfFileAnswer | null> {
    const { body } = await this.http.request('GET', '/stf-files/', {
      query: { stf_filename: stfFilename },
      signal,
    });
    const rows = readAnswer('stfFiles', body, 'GET /stf-files/');
    return rows.find((r) => r.stf_filename === stfFilename) ?? null;
  }

  /** The row with this `tf_filename`, or null. Accepts both list shapes (plain and ?limit= paginated). */
  async findFastMonFile(tfFilename: string, signal?: AbortSignal): Promise<FastMonFileAnswer | null> {
    const { body } = await this.http.request('GET', '/fastmon-files/', {
      query: { tf_filename: tfFilename },
      signal,
    });
    const rows = readAnswer('fastMonFiles', body, 'GET /fastmon-files/');
    // Before django-filter was global (swf-monitor < 2026-07-31) the filter was ignored and the
    // whole table came back: match the name ourselves rather than trust the first row.
    return rows.find((r) => r.tf_filename === tfFilename) ?? null;
  }
}

/**
 * swf-monitor's 400 for a unique field (DRF: "<model> with this <field> already exists."), as
 * opposed to other 400s on the same field (too long, wrong type), which are real errors.
 */
export function alreadyExists(err: unknown, field: string): boolean {
  if (!isFastmonError(err, 'MONITOR_REJECTED') || err.details?.status !== 400) return false;
  const response = err.details.response as Record<string, unknown> | null | undefined;
  const messages = response && typeof response === 'object' ? response[field] : undefined;
  return Array.isArray(messages) && messages.some((m) => /already exists/i.test(String(m)));
}
