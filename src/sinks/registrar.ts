// Where TF samples are recorded: swf-monitor's FastMonFile table, idempotently (or the local catalog).

import { FastmonError, isFastmonError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { FastMonFileRow, MonitorClient, NewFastMonFile } from '../monitor/client.js';

export interface SampleRecord {
  stfFilename: string;
  tfFilename: string;
  tfFirst: number;
  tfLast: number;
  tfCount: number;
  fileSizeBytes: number | null;
  checksum: string | null;
  metadata: Record<string, unknown>;
}

export interface Registered {
  tfFileId: string;
  /** False when the row already existed (a redelivery or a restart). */
  created: boolean;
}

export interface Registrar {
  readonly kind: 'monitor' | 'catalog';
  register(sample: SampleRecord, signal?: AbortSignal): Promise<Registered>;
  close(): Promise<void>;
}

export function toRow(s: SampleRecord): NewFastMonFile {
  return {
    stf_file: s.stfFilename,
    tf_filename: s.tfFilename,
    file_size_bytes: s.fileSizeBytes,
    checksum: s.checksum,
    status: 'registered',
    metadata: s.metadata,
    tf_first: s.tfFirst,
    tf_last: s.tfLast,
    tf_count: s.tfCount,
  };
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

  async register(sample: SampleRecord, signal?: AbortSignal): Promise<Registered> {
    try {
      const row = await this.client.createFastMonFile(toRow(sample), signal);
      return { tfFileId: row.tf_file_id, created: true };
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const existing = await this.client.findFastMonFile(sample.tfFilename, signal);
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

  async close(): Promise<void> {
    await this.client.http.close();
  }
}

function isUniqueViolation(err: unknown): boolean {
  if (!isFastmonError(err, 'MONITOR_REJECTED') || err.details?.status !== 400) return false;
  const response = err.details.response;
  return typeof response === 'object' && response !== null && 'tf_filename' in response;
}

export function describeConflict(
  existing: Pick<FastMonFileRow, 'stf_file' | 'tf_first' | 'tf_last'>,
  s: SampleRecord,
) {
  if (existing.stf_file !== s.stfFilename) return `stf_file ${existing.stf_file} != ${s.stfFilename}`;
  if (existing.tf_first !== s.tfFirst || existing.tf_last !== s.tfLast) {
    return `range [${existing.tf_first}, ${existing.tf_last}] != [${s.tfFirst}, ${s.tfLast}]`;
  }
  return null;
}

export function registrationError(sample: SampleRecord, err: unknown): FastmonError {
  if (err instanceof FastmonError) return err;
  return new FastmonError('MONITOR_UNAVAILABLE', `registering ${sample.tfFilename} failed: ${String(err)}`);
}
