// The FastMonFile resource of the monitor double: /api/fastmon-files/, the TF samples of an StfFile, with
// the documented range rules enforced, and the optional retention limit of the bench.

import { randomUUID } from 'node:crypto';
import {
  type Body,
  checkUnique,
  choiceFilter,
  type Errors,
  type Field,
  hasErrors,
  type Listed,
  type Mode,
  now,
  type Outcome,
  optional,
  optionalText,
  readFields,
  toUuid,
} from './drf.js';
import { bulkRoute } from './fastmon-bulk.js';
import { detail, listed, PK, type Route, route, saved } from './http.js';
import { FILE_STATUSES, type FileStatus, type StfFileRow, type StfFileTable } from './stf-files.js';

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

const TF_FILENAME_TAKEN = 'fast mon file with this tf filename already exists.';

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

export class FastmonFileTable {
  readonly rows: FastMonFileRow[] = [];
  private readonly byId = new Map<string, FastMonFileRow>();
  private readonly byName = new Map<string, FastMonFileRow>();
  private readonly byParent = new Map<StfFileRow, Set<FastMonFileRow>>();
  private readonly parentOf = new Map<FastMonFileRow, StfFileRow>();

  /** `retain`: see MonitorDoubleOptions.retainFastmonFiles. */
  constructor(
    private readonly stfFiles: StfFileTable,
    private readonly retain = Number.POSITIVE_INFINITY,
  ) {
    if (!(retain >= 1)) throw new RangeError(`retainFastmonFiles must be at least 1, got ${retain}`);
  }

  reset(): void {
    this.rows.length = 0;
    for (const index of [this.byId, this.byName, this.byParent, this.parentOf]) index.clear();
  }

  byPk = (pk: string) => this.byId.get(toUuid(pk) ?? '');

  /** An StfFile's stf_filename changed: its samples name it. */
  followParent(parent: StfFileRow): void {
    for (const child of this.byParent.get(parent) ?? []) child.stf_file = parent.stf_filename;
  }

  /** SlugRelatedField(slug_field='stf_filename'), accepted since monitor:bf27fbc. */
  private resolveStf(values: Body, errors: Errors): StfFileRow | undefined {
    if (errors.stf_file || !Object.hasOwn(values, 'stf_file')) return undefined;
    const name = values.stf_file;
    if (typeof name !== 'string' && typeof name !== 'number') {
      errors.stf_file = ['Invalid value.'];
      return undefined;
    }
    const parent = this.stfFiles.named(String(name));
    if (!parent) errors.stf_file = [`Object with stf_filename=${String(name)} does not exist.`];
    return parent;
  }

  save(body: Body, mode: Mode, row?: FastMonFileRow): Outcome<FastMonFileRow> {
    const { values, errors } = readFields(FASTMON_FIELDS, body, mode);
    const newParent = this.resolveStf(values, errors);
    checkUnique(errors, 'tf_filename', values, this.byName, row, TF_FILENAME_TAKEN);
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
      return { row: this.index(created as unknown as FastMonFileRow, parent) };
    }
    this.unindex(row);
    Object.assign(row, values, { updated_at: now() });
    return { row: this.index(row, parent) };
  }

  /**
   * The proposed bulk endpoint's rule for one row: the single POST's validation, except that a row whose
   * only fault is an existing tf_filename comes back as that existing row, unchanged.
   */
  createOrFind(body: Body): { row: FastMonFileRow; created: boolean } | { errors: Errors } {
    const outcome = this.save(body, 'create');
    if (!('errors' in outcome)) return { row: outcome.row, created: true };
    const { tf_filename: nameErrors, ...others } = outcome.errors;
    const existing = this.byName.get(String(body.tf_filename).trim());
    const onlyTaken = nameErrors?.[0] === TF_FILENAME_TAKEN && !hasErrors(others);
    return onlyTaken && existing ? { row: existing, created: false } : outcome;
  }

  private index(row: FastMonFileRow, parent: StfFileRow): FastMonFileRow {
    if (!this.byId.has(row.tf_file_id)) {
      this.rows.push(row);
      this.forgetOldest();
    }
    this.byId.set(row.tf_file_id, row);
    this.byName.set(row.tf_filename, row);
    this.parentOf.set(row, parent);
    const siblings = this.byParent.get(parent) ?? new Set();
    this.byParent.set(parent, siblings.add(row));
    return row;
  }

  private unindex(row: FastMonFileRow): void {
    this.byName.delete(row.tf_filename);
    const parent = this.parentOf.get(row);
    const siblings = parent ? this.byParent.get(parent) : undefined;
    siblings?.delete(row);
    if (parent && siblings?.size === 0) this.byParent.delete(parent);
  }

  /** Beyond the retention limit, drops the oldest rows, a batch at a time so the list is cut rarely. */
  private forgetOldest(): void {
    const excess = this.rows.length - this.retain;
    if (excess < Math.max(1, Math.floor(this.retain / 32))) return;
    for (const old of this.rows.slice(0, excess)) {
      this.unindex(old);
      this.parentOf.delete(old);
      this.byId.delete(old.tf_file_id);
    }
    this.rows.splice(0, excess);
  }

  delete(row: FastMonFileRow): void {
    this.unindex(row);
    this.parentOf.delete(row);
    this.byId.delete(row.tf_file_id);
    this.rows.splice(this.rows.indexOf(row), 1);
  }

  list(query: URLSearchParams): Listed<FastMonFileRow> {
    const errors: Errors = {};
    const tfName = query.get('tf_filename') || undefined;
    const stfName = query.get('stf_filename') || undefined;
    const status = choiceFilter(query, 'status', FILE_STATUSES, errors);
    if (hasErrors(errors)) return { errors };
    let candidates: Iterable<FastMonFileRow> = this.rows;
    if (tfName !== undefined) candidates = [this.byName.get(tfName)].filter((row) => !!row);
    else if (stfName !== undefined) {
      const parent = this.stfFiles.named(stfName);
      candidates = parent ? (this.byParent.get(parent) ?? []) : [];
    }
    const rows = [...candidates].filter(
      (row) =>
        (stfName === undefined || row.stf_file === stfName) &&
        (status === undefined || row.status === status),
    );
    return { rows };
  }

  routes(proposedBulk: boolean): Route[] {
    return [
      route('fastmon-files', 'writes', {
        GET: (call) => listed(this.list(call.query), call),
        POST: (call) => saved(this.save(call.body, 'create'), 201),
      }),
      // Before the detail route, as DRF's router puts @action(detail=False) routes. Without it, 'bulk' is
      // taken for a tf_file_id: POST answers 405 and GET 404, which is what swf-monitor answers today.
      ...(proposedBulk ? [bulkRoute(this)] : []),
      route(
        `fastmon-files/${PK}`,
        'writes',
        detail(
          'FastMonFile',
          this.byPk,
          (body, mode, row) => this.save(body, mode, row),
          (row) => this.delete(row),
        ),
      ),
    ];
  }
}
