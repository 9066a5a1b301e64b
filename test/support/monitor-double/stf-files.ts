// The StfFile resource of the monitor double: /api/stf-files/, each file in a Run, filtered and paginated.

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
  pythonType,
  readFields,
  toUuid,
} from './drf.js';
import { detail, listed, PK, type Route, route, saved } from './http.js';
import type { RunTable } from './runs.js';

export type FileStatus = 'registered' | 'processing' | 'processed' | 'failed' | 'done';
export const FILE_STATUSES: readonly FileStatus[] = [
  'registered',
  'processing',
  'processed',
  'failed',
  'done',
];

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

export class StfFileTable {
  readonly rows: StfFileRow[] = [];
  private readonly byId = new Map<string, StfFileRow>();
  private readonly byName = new Map<string, StfFileRow>();

  /** `renamed`: told when a row's stf_filename may have changed (its FastMonFiles name it). */
  constructor(
    private readonly runs: RunTable,
    private readonly renamed: (row: StfFileRow) => void,
  ) {}

  reset(): void {
    this.rows.length = 0;
    this.byId.clear();
    this.byName.clear();
  }

  byPk = (pk: string) => this.byId.get(toUuid(pk) ?? '');
  named = (stfFilename: string) => this.byName.get(stfFilename);

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
    const run = this.runs.withId(Number(pk));
    if (run) values.run = run.run_id;
    else errors.run = [`Invalid pk "${String(pk)}" - object does not exist.`];
  }

  save(body: Body, mode: Mode, row?: StfFileRow): Outcome<StfFileRow> {
    const { values, errors } = readFields(STF_FIELDS, body, mode);
    this.resolveRun(values, errors);
    const taken = 'stf file with this stf filename already exists.';
    checkUnique(errors, 'stf_filename', values, this.byName, row, taken);
    if (hasErrors(errors)) return { errors };
    if (!row) {
      const created = { file_id: randomUUID(), ...values, created_at: now() } as unknown as StfFileRow;
      this.rows.push(created);
      this.byId.set(created.file_id, created);
      this.byName.set(created.stf_filename, created);
      return { row: created };
    }
    this.byName.delete(row.stf_filename);
    Object.assign(row, values);
    this.byName.set(row.stf_filename, row);
    this.renamed(row);
    return { row };
  }

  list(query: URLSearchParams): Listed<StfFileRow> {
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
      runNumber === undefined ? undefined : (this.runs.withNumber(Number(runNumber))?.run_id ?? -1);
    const candidates = name === undefined ? this.rows : [this.byName.get(name)].filter((row) => !!row);
    const rows = candidates.filter(
      (row) =>
        (runId === undefined || row.run === runId) &&
        (status === undefined || row.status === status) &&
        (workflowId === undefined || row.workflow_id === workflowId),
    );
    return { rows };
  }

  routes(): Route[] {
    return [
      route('stf-files', 'writes', {
        GET: (call) => listed(this.list(call.query), call),
        POST: (call) => saved(this.save(call.body, 'create'), 201),
      }),
      route(
        `stf-files/${PK}`,
        'writes',
        detail('StfFile', this.byPk, (body, mode, row) => this.save(body, mode, row)),
      ),
    ];
  }
}
