// PROPOSED, not in swf-monitor (docs/bulk-posting.md): POST /api/fastmon-files/bulk/, served by the monitor
// double only with `proposedBulk`.

import { type Body, notADictionary, pythonType } from './drf.js';
import type { FastMonFileRow, FastmonFileTable } from './fastmon-files.js';
import { json, type Reply, type Route, route } from './http.js';

/** The most rows one bulk request may carry. */
export const BULK_MAX_ROWS = 500;

/** One row's outcome: 201 and the new row, 200 and the row that already had this tf_filename, or 400. */
export type BulkResult =
  | { status: 200 | 201; body: FastMonFileRow }
  | { status: 400; body: Record<string, string[]> };

/**
 * `{"rows": [...]}` → 200 `{"results": [...]}`, one result per row, in order. Rows are validated and saved
 * one by one with the single POST's rules, and a rejected row does not undo the others: an agent that
 * redelivers a batch must get its new rows created beside those it already wrote. The envelope is a DRF
 * ListField(max_length=BULK_MAX_ROWS); its errors reject the whole request before any row is read.
 */
function bulkCreate(table: FastmonFileTable, body: Body): Reply {
  const rows = body.rows;
  let error: string | undefined;
  if (!Object.hasOwn(body, 'rows')) error = 'This field is required.';
  else if (rows === null) error = 'This field may not be null.';
  else if (!Array.isArray(rows)) error = `Expected a list of items but got type "${pythonType(rows)}".`;
  else if (rows.length > BULK_MAX_ROWS) {
    error = `Ensure this field has no more than ${BULK_MAX_ROWS} elements.`;
  }
  if (error !== undefined) return json(400, { rows: [error] });
  const results = (rows as unknown[]).map((row): BulkResult => {
    const invalid = notADictionary(row);
    if (invalid) return { status: 400, body: invalid };
    const outcome = table.createOrFind(row as Body);
    if ('errors' in outcome) return { status: 400, body: outcome.errors };
    return { status: outcome.created ? 201 : 200, body: outcome.row };
  });
  return json(200, { results });
}

export function bulkRoute(table: FastmonFileTable): Route {
  return route('fastmon-files/bulk', 'writes', { POST: (call) => bulkCreate(table, call.body) });
}
