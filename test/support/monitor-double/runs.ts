// The Run resource of the monitor double: /api/runs/, which has no filters and no pagination.

import {
  type Body,
  checkUnique,
  type Field,
  hasErrors,
  type Mode,
  type Outcome,
  optional,
  readFields,
} from './drf.js';
import { detail, json, PK, type Route, route, saved } from './http.js';

export interface RunRow {
  run_id: number;
  run_number: number;
  start_time: string;
  end_time: string | null;
  run_conditions: unknown;
}

const RUN_FIELDS: Record<string, Field> = {
  run_number: { kind: 'int', required: true },
  start_time: { kind: 'datetime', required: true },
  end_time: optional('datetime'),
  run_conditions: optional('json'),
};

export class RunTable {
  readonly rows: RunRow[] = [];
  private readonly byId = new Map<number, RunRow>();
  private readonly byNumber = new Map<number, RunRow>();
  private nextId = 1;

  reset(): void {
    this.rows.length = 0;
    this.byId.clear();
    this.byNumber.clear();
    this.nextId = 1;
  }

  byPk = (pk: string) => (/^\d+$/.test(pk) ? this.byId.get(Number(pk)) : undefined);
  withId = (runId: number) => this.byId.get(runId);
  withNumber = (runNumber: number) => this.byNumber.get(runNumber);

  save(body: Body, mode: Mode, row?: RunRow): Outcome<RunRow> {
    const { values, errors } = readFields(RUN_FIELDS, body, mode);
    checkUnique(errors, 'run_number', values, this.byNumber, row, 'run with this run number already exists.');
    if (hasErrors(errors)) return { errors };
    if (!row) {
      const created = { run_id: this.nextId++, ...values } as unknown as RunRow;
      this.rows.push(created);
      this.byId.set(created.run_id, created);
      this.byNumber.set(created.run_number, created);
      return { row: created };
    }
    this.byNumber.delete(row.run_number);
    Object.assign(row, values);
    this.byNumber.set(row.run_number, row);
    return { row };
  }

  routes(): Route[] {
    return [
      // Run has no filterset and no pagination: ?run_number= is silently ignored and every run comes back.
      route('runs', 'writes', {
        GET: () => json(200, this.rows),
        POST: (call) => saved(this.save(call.body, 'create'), 201),
      }),
      route(
        `runs/${PK}`,
        'writes',
        detail('Run', this.byPk, (body, mode, row) => this.save(body, mode, row)),
      ),
    ];
  }
}
