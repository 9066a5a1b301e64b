// The AppLog resource of the monitor double: /api/logs/, AllowAny, one record per POST (docs/interop.md).

import { type Body, type Field, hasErrors, type Outcome, optional, readFields } from './drf.js';
import { json, type Route, route, saved } from './http.js';

/** An AppLog row (swf_applog), as POST /api/logs/ stores it. */
export interface AppLogRow {
  id: number;
  app_name: string;
  instance_name: string;
  timestamp: string;
  level: number;
  levelname: string;
  message: string;
  module: string;
  funcname: string;
  lineno: number;
  process: number;
  thread: number;
  extra_data: unknown;
}

// AppLog (models.AppLog): every field required except level (default NOTSET) and extra_data.
const APPLOG_FIELDS: Record<string, Field> = {
  app_name: { kind: 'string', maxLength: 100, required: true },
  instance_name: { kind: 'string', maxLength: 100, required: true },
  timestamp: { kind: 'datetime', required: true },
  level: { kind: 'int', default: () => 0 },
  levelname: { kind: 'string', maxLength: 50, required: true },
  message: { kind: 'string', required: true },
  module: { kind: 'string', maxLength: 255, required: true },
  funcname: { kind: 'string', maxLength: 255, required: true },
  lineno: { kind: 'int', required: true },
  process: { kind: 'int', required: true },
  thread: { kind: 'bigint', required: true },
  extra_data: optional('json'),
};
/** AppLog.level's choices: Python logging's NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL. */
const APPLOG_LEVELS = [0, 10, 20, 30, 40, 50];

export class AppLogTable {
  readonly rows: AppLogRow[] = [];
  private nextId = 1;

  reset(): void {
    this.rows.length = 0;
    this.nextId = 1;
  }

  save(body: Body): Outcome<AppLogRow> {
    const { values, errors } = readFields(APPLOG_FIELDS, body, 'create');
    if (!errors.level && !APPLOG_LEVELS.includes(values.level as number)) {
      errors.level = [`"${String(body.level)}" is not a valid choice.`];
    }
    if (hasErrors(errors)) return { errors };
    const row = { id: this.nextId++, ...values } as unknown as AppLogRow;
    this.rows.push(row);
    return { row };
  }

  routes(): Route[] {
    return [
      // AppLogViewSet: AllowAny, a ModelSerializer of one object (a list is "Expected a dictionary").
      route('logs', 'none', {
        GET: () => json(200, this.rows),
        POST: (call) => saved(this.save(call.body), 201),
      }),
    ];
  }
}
