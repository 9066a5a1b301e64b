// The local catalog: swf-monitor's FastMonFile, StfFile and Run rows in the local store, when there is no swf-monitor.

import { messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { catalogSampleRow, catalogStfRow } from '../monitor/rows.js';
import type { RegisterResult } from '../store/ops.js';
import type { Store } from '../store/store.js';
import {
  describeConflict,
  type Registered,
  type Registrar,
  type SampleRecord,
  type StfRecord,
} from './registrar.js';

/**
 * Same rules as swf-monitor: `tf_filename` is unique, and registering it again returns the row
 * already there (a different range under the same name is logged as a conflict). A registration
 * resolves once its transaction is committed and fsync'd.
 */
export class CatalogRegistrar implements Registrar {
  readonly kind = 'catalog';

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    /** Whether close() releases the store (the registrar acquired it). */
    private readonly owned = false,
  ) {}

  get file(): string {
    return this.store.file;
  }

  async register(sample: SampleRecord): Promise<Registered> {
    const result = await this.store.write<RegisterResult>({ op: 'register', row: catalogSampleRow(sample) });
    if (result.existing) {
      const conflict = describeConflict(result.existing, sample);
      if (conflict) {
        this.logger.warn(
          { code: 'REGISTRATION_CONFLICT', tf_filename: sample.tfFilename, conflict },
          'TF sample already in the catalog with a different range; keeping the existing row',
        );
      }
    }
    return { tfFileId: result.tfFileId, created: result.created };
  }

  /**
   * Queued, not awaited: the store commits in order, so the STF's row is committed with its first
   * sample's or before it, and a sample resolves only once committed; a sample of an STF with no row
   * gets one anyway (same run). That saves the scan one commit per STF. A failure is logged.
   */
  ensureStf(stf: StfRecord): Promise<void> {
    this.store.write({ op: 'ensureStf', stf: catalogStfRow(stf) }).catch((err: unknown) => {
      this.logger.error(
        { code: (err as { code?: string }).code ?? 'CATALOG_WRITE_FAILED', stf: stf.stfFilename },
        `StfFile row not written: ${messageOf(err)}`,
      );
    });
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.owned) await this.store.release();
  }
}
