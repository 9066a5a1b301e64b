// Where TF samples are recorded: swf-monitor's FastMonFile table, idempotently (or the local catalog).

import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { alreadyExists, type MonitorClient } from '../monitor/client.js';
import {
  type FastMonFileAnswer,
  fastMonFileRow,
  type SampleRecord,
  type StfRecord,
  stfFileRow,
} from '../monitor/rows.js';

// The records a registrar takes are defined with the rows they become (src/monitor/rows.ts).
export type { SampleRecord, StfRecord } from '../monitor/rows.js';

export interface Registered {
  tfFileId: string;
  /** False when the row already existed (a redelivery or a restart). */
  created: boolean;
}

export interface Registrar {
  readonly kind: 'monitor' | 'catalog' | 'database';
  register(sample: SampleRecord, signal?: AbortSignal): Promise<Registered>;
  /** Makes sure the Run and the StfFile exist (idempotent); for STFs that no data agent registered. */
  ensureStf(stf: StfRecord, signal?: AbortSignal): Promise<void>;
  /**
   * The STF's tf_count as its StfFile row says (null: no row, or no count); asked only when neither
   * the STF header nor the message says. Absent where there is no StfFile table (the catalog).
   */
  stfTfCount?(stfFilename: string, signal?: AbortSignal): Promise<number | null>;
  close(): Promise<void>;
}

/**
 * TF names are deterministic and `tf_filename` is unique in swf-monitor, so a second POST of the
 * same sample answers 400. That is the idempotency key: on a 400 that names tf_filename we
 * fetch the existing row and use its id. A different range under the same name means two
 * agents sampled with different settings; it is logged as a conflict, the existing row wins.
 */
export class MonitorRegistrar implements Registrar {
  readonly kind = 'monitor';

  constructor(
    private readonly client: MonitorClient,
    private readonly logger: Logger,
  ) {}

  async stfTfCount(stfFilename: string, signal?: AbortSignal): Promise<number | null> {
    const row = await this.client.findStfFile(stfFilename, signal);
    const n = row?.tf_count;
    return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : null;
  }

  async register(sample: SampleRecord, signal?: AbortSignal): Promise<Registered> {
    try {
      const row = await this.client.createFastMonFile(fastMonFileRow(sample), signal);
      return { tfFileId: row.tf_file_id, created: true };
    } catch (err) {
      if (!alreadyExists(err, 'tf_filename')) throw err;
      const existing = await this.findExisting(sample.tfFilename, signal);
      if (!existing) throw err;
      const conflict = describeConflict(existing, sample);
      if (conflict) {
        this.logger.warn(
          {
            code: 'REGISTRATION_CONFLICT',
            tf_filename: sample.tfFilename,
            stf: sample.stfFilename,
            conflict,
          },
          'TF sample already registered with a different range; keeping the existing row',
        );
      }
      return { tfFileId: existing.tf_file_id, created: false };
    }
  }

  /**
   * The row behind an "already exists". Whatever stops us reading it (a 4xx from a proxy, a
   * filter swf-monitor does not know, a timeout) says nothing about the sample, which is
   * registered but whose id we lack: it is reported as MONITOR_UNAVAILABLE, so the sample waits
   * in the outbox and is tried again, rather than being taken for a refusal and dropped unannounced.
   */
  private async findExisting(tfFilename: string, signal?: AbortSignal): Promise<FastMonFileAnswer | null> {
    try {
      return await this.client.findFastMonFile(tfFilename, signal);
    } catch (err) {
      if (isFastmonError(err, 'MONITOR_UNAVAILABLE') || signal?.aborted) throw err;
      throw new FastmonError(
        'MONITOR_UNAVAILABLE',
        `${tfFilename} is registered already, but its row could not be read: ${messageOf(err)}`,
        { tf_filename: tfFilename, lookup: isFastmonError(err) ? err.code : 'error' },
        { cause: err },
      );
    }
  }

  private readonly runIds = new Map<number, Promise<number>>();

  async ensureStf(stf: StfRecord, signal?: AbortSignal): Promise<void> {
    // One lookup per run, not per STF: the run list comes back whole every time (docs/testbed-interface.md, "swf-monitor's REST API").
    let runId = this.runIds.get(stf.runNumber);
    if (!runId) {
      runId = this.client.ensureRun(stf.runNumber, new Date(), signal).then((r) => r.runId);
      this.runIds.set(stf.runNumber, runId);
      runId.catch(() => this.runIds.delete(stf.runNumber));
    }
    await this.client.ensureStfFile(stfFileRow(await runId, stf), signal);
  }

  async close(): Promise<void> {
    await this.client.http.close();
  }
}

export function describeConflict(
  existing: Pick<FastMonFileAnswer, 'stf_file' | 'tf_first' | 'tf_last'>,
  s: SampleRecord,
) {
  if (existing.stf_file !== s.stfFilename) return `stf_file ${existing.stf_file} != ${s.stfFilename}`;
  if (existing.tf_first !== s.tfFirst || existing.tf_last !== s.tfLast) {
    return `range [${existing.tf_first}, ${existing.tf_last}] != [${s.tfFirst}, ${s.tfLast}]`;
  }
  return null;
}
