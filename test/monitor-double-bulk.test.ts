// The PROPOSED POST /api/fastmon-files/bulk/ of the swf-monitor double (docs/bulk-posting.md), and that it
// stays out of the way unless asked for.

import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  BULK_MAX_ROWS,
  type BulkResult,
  type MonitorDouble,
  startMonitorDouble,
} from './support/monitor-double.js';

const STF = 'swf.100001.000001.stf';
const BULK = '/api/fastmon-files/bulk/';

interface Answer {
  status: number;
  body: unknown;
}

/** `auth`: the Authorization header, a valid token unless given (null: none). */
async function post(monitor: MonitorDouble, path: string, body: unknown, auth?: string | null) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const authorization = auth === undefined ? `Token ${monitor.token}` : auth;
  if (authorization !== null) headers.authorization = authorization;
  const res = await request(`${monitor.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text) } as Answer;
}

async function get(monitor: MonitorDouble, path: string): Promise<Answer> {
  const res = await request(`${monitor.url}${path}`);
  return { status: res.statusCode, body: await res.body.json() };
}

/** A sample of the seeded STF, as the agent posts it. */
const sample = (tf_filename: string, extra: Record<string, unknown> = {}) => ({
  stf_file: STF,
  tf_filename,
  file_size_bytes: 1024,
  status: 'registered' as const,
  metadata: { sample_index: 0 },
  tf_first: 10,
  tf_last: 19,
  tf_count: 10,
  ...extra,
});

const results = (answer: Answer) => (answer.body as { results: BulkResult[] }).results;

describe('without proposedBulk (the default)', () => {
  let monitor: MonitorDouble;

  beforeAll(async () => {
    monitor = await startMonitorDouble();
    monitor.addStfFile({ stf_filename: STF, run_number: 100001, tf_count: 1000 });
  });

  afterAll(async () => {
    await monitor.close();
  });

  it('answers as swf-monitor does today, whose detail route takes "bulk" for a tf_file_id', async () => {
    const answer = await post(monitor, BULK, { rows: [sample('tf.1')] });
    expect(answer).toEqual({ status: 405, body: { detail: 'Method "POST" not allowed.' } });
    expect(await get(monitor, BULK)).toEqual({
      status: 404,
      body: { detail: 'No FastMonFile matches the given query.' },
    });
    expect(monitor.fastmonFiles).toEqual([]);
  });

  it('asks for credentials first, as DRF authenticates before it checks the method', async () => {
    const answer = await post(monitor, BULK, { rows: [sample('tf.1')] }, null);
    expect(answer).toEqual({
      status: 401,
      body: { detail: 'Authentication credentials were not provided.' },
    });
  });
});

describe('with proposedBulk', () => {
  let monitor: MonitorDouble;

  beforeAll(async () => {
    monitor = await startMonitorDouble({ proposedBulk: true, basePath: '/swf-monitor' });
  });

  afterAll(async () => {
    await monitor.close();
  });

  beforeEach(() => {
    monitor.reset();
    monitor.addStfFile({ stf_filename: STF, run_number: 100001, tf_count: 1000 });
  });

  it('answers each row in order: created, already there, rejected', async () => {
    const before = monitor.addFastmonFile(sample('tf.old'));
    const answer = await post(monitor, BULK, {
      rows: [
        sample('tf.1'),
        sample('tf.old', { tf_first: 20, tf_last: 29 }),
        sample('tf.2', { stf_file: 'nope.stf' }),
        sample('tf.3'),
        sample('tf.1'),
      ],
    });
    expect(answer.status).toBe(200);
    const [first, old, unknown, third, again] = results(answer);
    expect(results(answer).map((r) => r.status)).toEqual([201, 200, 400, 201, 200]);
    expect(old?.body).toEqual(before); // the existing row, unchanged: its range stays [10, 19]
    expect(unknown?.body).toEqual({ stf_file: ['Object with stf_filename=nope.stf does not exist.'] });
    expect(again?.body).toEqual(first?.body); // a name repeated in one batch is one row
    expect(monitor.fastmonFiles).toEqual([before, first?.body, third?.body]);
    expect(monitor.fastmonFiles.map((row) => row.tf_filename)).toEqual(['tf.old', 'tf.1', 'tf.3']);
  });

  it('gives a created row the body the single POST gives', async () => {
    const single = await post(monitor, '/api/fastmon-files/', sample('tf.single'));
    const bulk = await post(monitor, BULK, { rows: [sample('tf.bulk')] });
    const created = results(bulk)[0];
    expect(created?.status).toBe(201);
    expect(Object.keys(created?.body ?? {}).sort()).toEqual(Object.keys(single.body as object).sort());
    expect(created?.body).toMatchObject({ stf_file: STF, tf_filename: 'tf.bulk', status: 'registered' });
  });

  it('rejects a row with the errors the single POST gives, and keeps the rows around it', async () => {
    const bad = [
      sample('tf.range', { tf_last: 1000, tf_count: 991 }),
      sample('tf.status', { status: 'DONE', file_size_bytes: -1 }),
      { file_size_bytes: 1 },
      'tf.4',
    ];
    const singles = await Promise.all(bad.map((row) => post(monitor, '/api/fastmon-files/', row)));
    const bulk = await post(monitor, BULK, { rows: [sample('tf.1'), ...bad, sample('tf.2')] });
    expect(results(bulk).map((r) => r.status)).toEqual([201, 400, 400, 400, 400, 201]);
    expect(results(bulk).slice(1, -1)).toEqual(singles.map((s) => ({ status: s.status, body: s.body })));
    expect(monitor.fastmonFiles.map((row) => row.tf_filename)).toEqual(['tf.1', 'tf.2']);
  });

  it('rejects an existing tf_filename that has other faults, with all of them, as the single POST does', async () => {
    monitor.addFastmonFile(sample('tf.old'));
    const bulk = await post(monitor, BULK, { rows: [sample('tf.old', { stf_file: 'nope.stf' })] });
    expect(results(bulk)).toEqual([
      {
        status: 400,
        body: {
          stf_file: ['Object with stf_filename=nope.stf does not exist.'],
          tf_filename: ['fast mon file with this tf filename already exists.'],
        },
      },
    ]);
  });

  it('needs the token, as the single POST does, and writes nothing without it', async () => {
    const rows = [sample('tf.1')];
    expect(await post(monitor, BULK, { rows }, null)).toEqual({
      status: 401,
      body: { detail: 'Authentication credentials were not provided.' },
    });
    expect(await post(monitor, BULK, { rows }, 'Token 0000')).toEqual({
      status: 401,
      body: { detail: 'Invalid token.' },
    });
    expect(monitor.fastmonFiles).toEqual([]);
  });

  it(`takes at most ${BULK_MAX_ROWS} rows and rejects a larger batch whole`, async () => {
    const rows = (count: number) => Array.from({ length: count }, (_, i) => sample(`tf.${i}`));
    const tooMany = await post(monitor, BULK, { rows: rows(BULK_MAX_ROWS + 1) });
    expect(tooMany).toEqual({
      status: 400,
      body: { rows: [`Ensure this field has no more than ${BULK_MAX_ROWS} elements.`] },
    });
    expect(monitor.fastmonFiles).toEqual([]);
    const full = await post(monitor, BULK, { rows: rows(BULK_MAX_ROWS) });
    expect(results(full).filter((r) => r.status === 201)).toHaveLength(BULK_MAX_ROWS);
    expect(monitor.fastmonFiles).toHaveLength(BULK_MAX_ROWS);
  });

  it('rejects an envelope without a list of rows, and answers an empty list with no results', async () => {
    expect(await post(monitor, BULK, {})).toEqual({
      status: 400,
      body: { rows: ['This field is required.'] },
    });
    expect(await post(monitor, BULK, { rows: sample('tf.1') })).toEqual({
      status: 400,
      body: { rows: ['Expected a list of items but got type "dict".'] },
    });
    expect(await post(monitor, BULK, [sample('tf.1')])).toEqual({
      status: 400,
      body: { non_field_errors: ['Invalid data. Expected a dictionary, but got list.'] },
    });
    expect(await post(monitor, BULK, { rows: [] })).toEqual({ status: 200, body: { results: [] } });
    expect(monitor.fastmonFiles).toEqual([]);
  });

  it('serves POST only, and logs one request per batch', async () => {
    expect((await get(monitor, BULK)).status).toBe(405);
    monitor.clearRequests();
    await post(monitor, BULK, { rows: [sample('tf.1'), sample('tf.2')] });
    expect(monitor.requests.map((r) => [r.method, r.path, r.status])).toEqual([
      ['POST', `/swf-monitor${BULK}`, 200],
    ]);
  });
});
