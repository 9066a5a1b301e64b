// The local catalog: an append-only JSON-lines file of FastMonFile rows, used when there is no swf-monitor.

import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { FastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { FastMonFileRow } from '../monitor/client.js';
import {
  describeConflict,
  type Registered,
  type Registrar,
  type SampleRecord,
  type StfRecord,
  toRow,
} from './registrar.js';

/** One line of the catalog: a FastMonFile row exactly as swf-monitor would return it, tagged. */
export interface CatalogLine extends FastMonFileRow {
  kind: 'fastmon_file';
}

/** An STF registered from disk (the catalog's StfFile row, with its run number). */
export interface CatalogStfLine {
  kind: 'stf_file';
  stf_filename: string;
  run_number: number;
  file_size_bytes: number | null;
  checksum: string | null;
  tf_count: number | null;
  machine_state: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
}

/**
 * Same rules as swf-monitor: `tf_filename` is unique, and registering it again returns the
 * existing row. Lines are appended in batches, each batch followed by fdatasync, so a line is
 * durable before its registration resolves; a torn last line (power loss mid-write) is skipped
 * with a warning on the next start.
 */
export class CatalogRegistrar implements Registrar {
  readonly kind = 'catalog';
  private readonly byName = new Map<
    string,
    Pick<FastMonFileRow, 'tf_file_id' | 'stf_file' | 'tf_first' | 'tf_last'>
  >();
  private readonly stfs = new Set<string>();
  private queue: { line: string; resolve: () => void; reject: (err: Error) => void }[] = [];
  private flushing: Promise<void> | null = null;

  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
    private readonly logger: Logger,
  ) {}

  static async open(file: string, logger: Logger): Promise<CatalogRegistrar> {
    const resolved = path.resolve(file);
    await mkdir(path.dirname(resolved), { recursive: true });
    const handle = await open(resolved, 'a+');
    const catalog = new CatalogRegistrar(resolved, handle, logger);
    await catalog.load();
    return catalog;
  }

  get size(): number {
    return this.byName.size;
  }

  async register(sample: SampleRecord): Promise<Registered> {
    const existing = this.byName.get(sample.tfFilename);
    if (existing) {
      const conflict = describeConflict(existing, sample);
      if (conflict) {
        this.logger.warn(
          { code: 'REGISTRATION_CONFLICT', tf_filename: sample.tfFilename, conflict },
          'TF sample already in the catalog with a different range; keeping the existing row',
        );
      }
      return { tfFileId: existing.tf_file_id, created: false };
    }
    const now = new Date().toISOString();
    const row: CatalogLine = {
      kind: 'fastmon_file',
      tf_file_id: randomUUID(),
      ...toRow(sample),
      created_at: now,
      updated_at: now,
    };
    // Claimed before the write so a concurrent duplicate gets the same id.
    this.byName.set(row.tf_filename, row);
    try {
      await this.append(JSON.stringify(row));
    } catch (err) {
      this.byName.delete(row.tf_filename);
      throw err;
    }
    return { tfFileId: row.tf_file_id, created: true };
  }

  async ensureStf(stf: StfRecord): Promise<void> {
    if (this.stfs.has(stf.stfFilename)) return;
    this.stfs.add(stf.stfFilename);
    const line: CatalogStfLine = {
      kind: 'stf_file',
      stf_filename: stf.stfFilename,
      run_number: stf.runNumber,
      file_size_bytes: stf.sizeBytes,
      checksum: stf.checksum,
      tf_count: stf.tfCount,
      machine_state: stf.state,
      metadata: { ...stf.metadata, substate: stf.substate },
      created_at: new Date().toISOString(),
    };
    try {
      await this.append(JSON.stringify(line));
    } catch (err) {
      this.stfs.delete(stf.stfFilename);
      throw err;
    }
  }

  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.handle.close();
  }

  private async load(): Promise<void> {
    const rows = await readCatalog(
      this.file,
      (line) => this.logger.warn({ catalog: this.file, line }, 'skipping an unreadable catalog line'),
      (stf) => this.stfs.add(stf.stf_filename),
    );
    for (const row of rows) this.byName.set(row.tf_filename, row);
  }

  private append(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      if (!this.flushing) this.flushing = this.flush();
    });
  }

  /** Group commit: everything queued while the previous batch was syncing goes out in one write. */
  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.handle.appendFile(`${batch.map((b) => b.line).join('\n')}\n`);
        await this.handle.datasync();
        for (const b of batch) b.resolve();
      } catch (err) {
        const error = new FastmonError(
          'CATALOG_WRITE_FAILED',
          `cannot append to catalog ${this.file}: ${messageOf(err)}`,
        );
        for (const b of batch) b.reject(error);
      }
    }
    this.flushing = null;
  }
}

/** Reads every row of a catalog file (for loading, replay and tests). */
export async function readCatalog(
  file: string,
  onUnreadable?: (line: number) => void,
  onStf?: (stf: CatalogStfLine) => void,
): Promise<CatalogLine[]> {
  const rows: CatalogLine[] = [];
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let number = 0;
  for await (const text of lines) {
    number++;
    if (text.trim() === '') continue;
    try {
      const row = JSON.parse(text) as CatalogLine | CatalogStfLine;
      if (row.kind === 'fastmon_file' && typeof row.tf_filename === 'string') rows.push(row);
      else if (row.kind === 'stf_file') onStf?.(row);
    } catch {
      onUnreadable?.(number);
    }
  }
  return rows;
}
