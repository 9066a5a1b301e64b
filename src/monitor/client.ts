// swf-monitor's REST API as fastmon uses it: identity, subscriber, heartbeats, FastMonFile rows.

import { FastmonError, isFastmonError } from '../errors.js';
import type { MonitorHttp } from './http.js';

/** A FastMonFile row as swf-monitor serializes it (fields='__all__', stf_file as its filename). */
export interface FastMonFileRow {
  tf_file_id: string;
  stf_file: string;
  tf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: string;
  metadata: Record<string, unknown> | null;
  tf_first: number | null;
  tf_last: number | null;
  tf_count: number | null;
  created_at?: string;
  updated_at?: string;
}

export type NewFastMonFile = Omit<FastMonFileRow, 'tf_file_id' | 'created_at' | 'updated_at'>;

/** The heartbeat body swf-common-lib's BaseAgent sends (contract §2.6); other keys are ignored. */
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
}

export class MonitorClient {
  constructor(readonly http: MonitorHttp) {}

  /** `POST /api/state/next-agent-id/` → the global sequence number in agent names. */
  async nextAgentId(signal?: AbortSignal): Promise<number> {
    const { body } = await this.http.request<{ agent_id?: unknown }>('POST', '/state/next-agent-id/', {
      body: {},
      signal,
    });
    const id = Number(body?.agent_id);
    if (!Number.isInteger(id)) {
      throw new FastmonError(
        'MONITOR_BAD_RESPONSE',
        `next-agent-id returned no agent_id: ${JSON.stringify(body)}`,
      );
    }
    return id;
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

  async createFastMonFile(row: NewFastMonFile, signal?: AbortSignal): Promise<FastMonFileRow> {
    const { body } = await this.http.request<FastMonFileRow>('POST', '/fastmon-files/', {
      body: row,
      signal,
    });
    if (!body || typeof body.tf_file_id !== 'string') {
      throw new FastmonError(
        'MONITOR_BAD_RESPONSE',
        `fastmon-files POST returned no tf_file_id: ${JSON.stringify(body)}`,
      );
    }
    return body;
  }

  /** The row with this `tf_filename`, or null. Accepts both list shapes (plain and ?limit= paginated). */
  async findFastMonFile(tfFilename: string, signal?: AbortSignal): Promise<FastMonFileRow | null> {
    const { body } = await this.http.request<FastMonFileRow[] | { results: FastMonFileRow[] }>(
      'GET',
      '/fastmon-files/',
      {
        query: { tf_filename: tfFilename },
        signal,
      },
    );
    const rows = Array.isArray(body) ? body : (body?.results ?? []);
    // Before django-filter was global (swf-monitor < 2026-07-31) the filter was ignored and the
    // whole table came back: match the name ourselves rather than trust the first row.
    return rows.find((r) => r.tf_filename === tfFilename) ?? null;
  }
}
