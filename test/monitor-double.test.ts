// Proves that the swf-monitor double enforces the rules the fastmon client is tested against.

import { Agent, request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type MonitorDouble, startMonitorDouble } from './support/monitor-double.js';

let monitor: MonitorDouble;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

interface CallOptions {
  body?: unknown;
  /** Sent as is, bypassing JSON encoding. */
  raw?: string;
  /** Authorization header; defaults to a valid token on writes. */
  auth?: string | null;
  contentType?: string;
  /** Abort the request after this many milliseconds. */
  timeoutMs?: number;
  base?: string;
}

async function call(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const auth = options.auth === undefined ? `Token ${monitor.token}` : options.auth;
  if (auth !== null) headers.authorization = auth;
  const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (payload !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  const res = await request(`${options.base ?? monitor.url}${path}`, {
    method: method as 'GET',
    headers,
    body: payload,
    signal: options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs),
  });
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {}
  return { status: res.statusCode, headers: res.headers, body };
}

const get = (path: string, options: CallOptions = {}) => call('GET', path, { auth: null, ...options });
const post = (path: string, body: unknown, options: CallOptions = {}) =>
  call('POST', path, { body, ...options });
const patch = (path: string, body: unknown, options: CallOptions = {}) =>
  call('PATCH', path, { body, ...options });

/** A run with one STF of 1000 TFs, as the data agent would have registered it. */
function seedStf(stf_filename = 'swf.100001.000001.stf', tf_count: number | null = 1000) {
  return monitor.addStfFile({ stf_filename, run_number: 100001, tf_count });
}

const sample = (tf_filename: string, extra: Record<string, unknown> = {}) => ({
  stf_file: 'swf.100001.000001.stf',
  tf_filename,
  file_size_bytes: 1024,
  tf_first: 10,
  tf_last: 19,
  tf_count: 10,
  ...extra,
});

beforeAll(async () => {
  monitor = await startMonitorDouble();
});

afterAll(async () => {
  await monitor.close();
});

beforeEach(() => {
  monitor.reset();
});

describe('authentication (TokenAuthentication + IsAuthenticatedOrReadOnly)', () => {
  it('generates a 40-hex token when none is given', () => {
    expect(monitor.token).toMatch(/^[0-9a-f]{40}$/);
  });

  it('lets anonymous clients read lists', async () => {
    seedStf();
    const answer = await get('/api/stf-files/');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(answer.body).toHaveLength(1);
  });

  it('rejects a write without credentials with 401 "not provided"', async () => {
    const answer = await post(
      '/api/runs/',
      { run_number: 1, start_time: '2026-08-01T10:00:00Z' },
      { auth: null },
    );
    expect(answer.status).toBe(401);
    expect(answer.body).toEqual({ detail: 'Authentication credentials were not provided.' });
    expect(answer.headers['www-authenticate']).toBe('Token');
    expect(monitor.runs).toHaveLength(0);
  });

  it('rejects a write with a wrong token with 401 "Invalid token."', async () => {
    const answer = await post('/api/fastmon-files/', sample('tf.1'), { auth: 'Token 0000' });
    expect(answer.status).toBe(401);
    expect(answer.body).toEqual({ detail: 'Invalid token.' });
  });

  it('rejects a wrong token even on an anonymous-readable GET, as DRF authenticates first', async () => {
    const answer = await get('/api/runs/', { auth: 'Token wrong' });
    expect(answer).toMatchObject({ status: 401, body: { detail: 'Invalid token.' } });
  });

  it('requires the token on state endpoints for any method', async () => {
    expect((await get('/api/state/next-agent-id/')).status).toBe(401);
    expect((await post('/api/state/next-agent-id/', {}, { auth: null })).status).toBe(401);
  });

  it('accepts a token chosen by the caller', async () => {
    const other = await startMonitorDouble({ token: 'a'.repeat(40) });
    try {
      const answer = await call('POST', '/api/state/next-agent-id/', {
        base: other.url,
        auth: `Token ${'a'.repeat(40)}`,
      });
      expect(answer.status).toBe(200);
    } finally {
      await other.close();
    }
  });
});

describe('HTTP conventions', () => {
  it('answers an unknown route with 404 {"detail":"Not found."}', async () => {
    const answer = await get('/api/messages/');
    expect(answer).toMatchObject({ status: 404, body: { detail: 'Not found.' } });
  });

  it('answers a method the route does not have with 405', async () => {
    const answer = await call('DELETE', '/api/runs/');
    expect(answer.status).toBe(405);
    expect(answer.body).toEqual({ detail: 'Method "DELETE" not allowed.' });
  });

  it('redirects a path without its trailing slash instead of serving it', async () => {
    const answer = await post('/api/fastmon-files', sample('tf.1'));
    expect(answer.status).toBe(301);
    expect(answer.headers.location).toBe('/api/fastmon-files/');
  });

  it('rejects invalid JSON with a DRF parse error', async () => {
    const answer = await call('POST', '/api/runs/', { raw: '{"run_number": ' });
    expect(answer.status).toBe(400);
    expect((answer.body as { detail: string }).detail).toMatch(/^JSON parse error - /);
  });

  it('rejects a JSON body that is not an object', async () => {
    const answer = await post('/api/runs/', [1, 2]);
    expect(answer).toMatchObject({
      status: 400,
      body: { non_field_errors: ['Invalid data. Expected a dictionary, but got list.'] },
    });
  });

  it('rejects a body that is not declared as JSON with 415', async () => {
    const answer = await call('POST', '/api/runs/', { raw: '{}', contentType: 'text/plain' });
    expect(answer).toMatchObject({
      status: 415,
      body: { detail: 'Unsupported media type "text/plain" in request.' },
    });
  });

  it('ignores body keys the model does not have', async () => {
    const answer = await post('/api/runs/', {
      run_number: 7,
      start_time: '2026-08-01T10:00:00Z',
      colour: 'red',
    });
    expect(answer.status).toBe(201);
    expect(answer.body).not.toHaveProperty('colour');
  });

  it('serves the API under a base path when mounted on a sub-path', async () => {
    const mounted = await startMonitorDouble({ basePath: '/swf-monitor' });
    try {
      expect(mounted.url).toBe(`http://127.0.0.1:${mounted.port}/swf-monitor`);
      expect((await get('/api/runs/', { base: mounted.url })).status).toBe(200);
      expect((await get('/api/runs/', { base: `http://127.0.0.1:${mounted.port}` })).status).toBe(404);
    } finally {
      await mounted.close();
    }
  });
});

describe('state counters', () => {
  it('hands out agent ids counting up from 1', async () => {
    const first = await post('/api/state/next-agent-id/', {});
    const second = await post('/api/state/next-agent-id/', {});
    expect(first).toMatchObject({ status: 200, body: { agent_id: 1, status: 'success' } });
    expect(second.body).toEqual({ agent_id: 2, status: 'success' });
  });

  it('hands out run numbers from 100010', async () => {
    const answer = await post('/api/state/next-run-number/', {});
    expect(answer.body).toEqual({ run_number: 100010, status: 'success' });
  });
});

describe('system agents and heartbeats', () => {
  const beat = (extra: Record<string, unknown> = {}) => ({
    instance_name: 'fastmon-agent-test-1',
    agent_type: 'fastmon',
    status: 'OK',
    description: 'fastmon agent. MQ: connected',
    mq_connected: true,
    pid: 4242,
    hostname: 'node1',
    operational_state: 'STARTING',
    namespace: 'epic',
    ...extra,
  });

  it('creates the agent with 201, then updates it with 200, keeping every body', async () => {
    const created = await post('/api/systemagents/heartbeat/', beat());
    const updated = await post(
      '/api/systemagents/heartbeat/',
      beat({ operational_state: 'EXITED', status: 'EXITED' }),
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      instance_name: 'fastmon-agent-test-1',
      agent_type: 'fastmon',
      pid: 4242,
    });
    expect(updated.status).toBe(200);
    expect(monitor.agents).toHaveLength(1);
    expect(monitor.agents[0]).toMatchObject({
      status: 'EXITED',
      operational_state: 'EXITED',
      namespace: 'epic',
    });
    expect(monitor.agents[0]?.last_heartbeat).toMatch(/Z$/);
    expect(monitor.heartbeats.map((h) => h.body.operational_state)).toEqual(['STARTING', 'EXITED']);
    expect(monitor.heartbeats.map((h) => h.status)).toEqual([201, 200]);
  });

  it('drops unknown keys and resets an omitted namespace to null, as update_or_create defaults do', async () => {
    await post('/api/systemagents/heartbeat/', beat());
    const { namespace: _omitted, ...withoutNamespace } = beat();
    const answer = await post('/api/systemagents/heartbeat/', withoutNamespace);
    expect(answer.body).toMatchObject({ namespace: null, status: 'OK', workflow_enabled: true });
    expect(answer.body).not.toHaveProperty('mq_connected');
  });

  it('defaults agent_type to other and status to OK', async () => {
    const answer = await post('/api/systemagents/heartbeat/', { instance_name: 'bare' });
    expect(answer.body).toMatchObject({
      agent_type: 'other',
      status: 'OK',
      namespace: null,
      description: '',
    });
  });

  it('requires instance_name', async () => {
    const answer = await post('/api/systemagents/heartbeat/', { agent_type: 'fastmon' });
    expect(answer).toMatchObject({ status: 400, body: { error: 'instance_name is required' } });
  });

  it('rejects a status outside UNKNOWN/OK/WARNING/ERROR/EXITED', async () => {
    const answer = await post('/api/systemagents/heartbeat/', beat({ status: 'ok' }));
    expect(answer).toMatchObject({ status: 400, body: { status: ['"ok" is not a valid choice.'] } });
    expect(monitor.heartbeats).toHaveLength(0);
  });

  it('rejects an unknown operational_state', async () => {
    const answer = await post('/api/systemagents/heartbeat/', beat({ operational_state: 'RUNNING' }));
    expect(answer.status).toBe(400);
  });

  it('lists agents anonymously (the BaseAgent health check)', async () => {
    await post('/api/systemagents/heartbeat/', beat());
    const answer = await get('/api/systemagents/');
    expect(answer.body).toMatchObject([{ instance_name: 'fastmon-agent-test-1' }]);
  });
});

describe('subscribers', () => {
  it('rejects a duplicate subscriber_name with DRF unique message', async () => {
    const subscriber = {
      subscriber_name: 'fastmon-agent-test-1-/topic/epictopic',
      fraction: 1.0,
      is_active: true,
    };
    expect((await post('/api/subscribers/', subscriber)).status).toBe(201);
    const again = await post('/api/subscribers/', subscriber);
    expect(again).toMatchObject({
      status: 400,
      body: { subscriber_name: ['subscriber with this subscriber name already exists.'] },
    });
    expect(monitor.subscribers).toHaveLength(1);
  });
});

describe('runs', () => {
  it('creates a run and rejects a duplicate run_number', async () => {
    const run = { run_number: 100001, start_time: '2026-08-01T10:00:00Z', run_conditions: { beam: 'on' } };
    const created = await post('/api/runs/', run);
    expect(created).toMatchObject({ status: 201, body: { run_id: 1, run_number: 100001, end_time: null } });
    const again = await post('/api/runs/', run);
    expect(again).toMatchObject({
      status: 400,
      body: { run_number: ['run with this run number already exists.'] },
    });
  });

  it('requires start_time', async () => {
    const answer = await post('/api/runs/', { run_number: 5 });
    expect(answer).toMatchObject({ status: 400, body: { start_time: ['This field is required.'] } });
  });

  it('ignores ?run_number= and returns every run (Run has no filters)', async () => {
    monitor.addRun({ run_number: 100001 });
    monitor.addRun({ run_number: 100002 });
    const answer = await get('/api/runs/?run_number=100002');
    expect((answer.body as { run_number: number }[]).map((run) => run.run_number)).toEqual([100001, 100002]);
  });

  it('looks up the detail route by run_id, not run_number, and closes a run by PATCH', async () => {
    const run = monitor.addRun({ run_number: 100001, start_time: '2026-08-01T10:00:00+02:00' });
    expect(run.start_time).toBe('2026-08-01T08:00:00Z');
    expect((await get('/api/runs/100001/')).status).toBe(404);
    const closed = await patch(`/api/runs/${run.run_id}/`, { end_time: '2026-08-01T12:00:00Z' });
    expect(closed).toMatchObject({
      status: 200,
      body: { run_number: 100001, end_time: '2026-08-01T12:00:00Z' },
    });
  });
});

describe('STF files', () => {
  it('requires run to be the pk of an existing Run', async () => {
    const answer = await post('/api/stf-files/', { run: 999, stf_filename: 'a.stf' });
    expect(answer).toMatchObject({
      status: 400,
      body: { run: ['Invalid pk "999" - object does not exist.'] },
    });
  });

  it('registers an STF with model defaults and rejects a duplicate stf_filename', async () => {
    const run = monitor.addRun({ run_number: 100001 });
    const created = await post('/api/stf-files/', { run: run.run_id, stf_filename: 'a.stf' });
    expect(created).toMatchObject({
      status: 201,
      body: { run: run.run_id, status: 'registered', machine_state: 'physics' },
    });
    const again = await post('/api/stf-files/', { run: run.run_id, stf_filename: 'a.stf' });
    expect(again).toMatchObject({
      status: 400,
      body: { stf_filename: ['stf file with this stf filename already exists.'] },
    });
  });

  it('accepts only lower-case FileStatus values', async () => {
    const run = monitor.addRun({ run_number: 100001 });
    const answer = await post('/api/stf-files/', {
      run: run.run_id,
      stf_filename: 'a.stf',
      status: 'REGISTERED',
    });
    expect(answer).toMatchObject({ status: 400, body: { status: ['"REGISTERED" is not a valid choice.'] } });
  });

  it('filters by stf_filename, run_number and status', async () => {
    monitor.addStfFile({ stf_filename: 'a.stf', run_number: 100001 });
    monitor.addStfFile({ stf_filename: 'b.stf', run_number: 100001, status: 'done' });
    monitor.addStfFile({ stf_filename: 'c.stf', run_number: 100002 });
    const names = async (query: string) =>
      ((await get(`/api/stf-files/?${query}`)).body as { stf_filename: string }[]).map(
        (row) => row.stf_filename,
      );
    expect(await names('stf_filename=b.stf')).toEqual(['b.stf']);
    expect(await names('run_number=100001')).toEqual(['a.stf', 'b.stf']);
    expect(await names('run_number=100001&status=done')).toEqual(['b.stf']);
    expect(await names('run_number=999')).toEqual([]);
  });

  it('rejects a run_number filter that is not digits', async () => {
    const answer = await get('/api/stf-files/?run_number=abc');
    expect(answer).toMatchObject({ status: 400, body: { run_number: ['Enter a number.'] } });
  });

  it('paginates only when ?limit= is given', async () => {
    for (const name of ['a', 'b', 'c']) monitor.addStfFile({ stf_filename: `${name}.stf`, run_number: 1 });
    expect(Array.isArray((await get('/api/stf-files/')).body)).toBe(true);
    const page = await get('/api/stf-files/?limit=2');
    expect(page.body).toMatchObject({
      count: 3,
      next: `${monitor.url}/api/stf-files/?limit=2&offset=2`,
      previous: null,
    });
    expect((page.body as { results: unknown[] }).results).toHaveLength(2);
  });

  it('updates an STF by file_id', async () => {
    const stf = seedStf();
    const answer = await patch(`/api/stf-files/${stf.file_id}/`, { status: 'processed' });
    expect(answer).toMatchObject({
      status: 200,
      body: { status: 'processed', stf_filename: stf.stf_filename },
    });
  });
});

describe('FastMon files (TF samples)', () => {
  it('answers a POST with 201 and the full row, stf_file being the parent filename', async () => {
    seedStf();
    const answer = await post(
      '/api/fastmon-files/',
      sample('tf.1', { checksum: 'ad:0123abcd', metadata: { n: 1 } }),
    );
    expect(answer.status).toBe(201);
    const row = answer.body as Record<string, unknown>;
    expect(Object.keys(row).sort()).toEqual(
      [
        'checksum',
        'created_at',
        'file_size_bytes',
        'metadata',
        'status',
        'stf_file',
        'tf_count',
        'tf_file_id',
        'tf_filename',
        'tf_first',
        'tf_last',
        'updated_at',
      ].sort(),
    );
    expect(row).toMatchObject({
      stf_file: 'swf.100001.000001.stf',
      status: 'registered',
      tf_first: 10,
      tf_count: 10,
    });
    expect(row.tf_file_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(monitor.fastmonFiles).toEqual([row]);
  });

  it('rejects a duplicate tf_filename with DRF unique message', async () => {
    seedStf();
    await post('/api/fastmon-files/', sample('tf.1'));
    const again = await post('/api/fastmon-files/', sample('tf.1'));
    expect(again.status).toBe(400);
    expect(again.body).toEqual({ tf_filename: ['fast mon file with this tf filename already exists.'] });
    expect(monitor.fastmonFiles).toHaveLength(1);
  });

  it('with retainFastmonFiles (the bench), keeps only the newest rows; a forgotten name is free again', async () => {
    const bench = await startMonitorDouble({ retainFastmonFiles: 4 });
    const write = (body: unknown) =>
      call('POST', '/api/fastmon-files/', { body, base: bench.url, auth: `Token ${bench.token}` });
    try {
      bench.addStfFile({ stf_filename: 'swf.100001.000001.stf', run_number: 100001, tf_count: 1000 });
      for (let i = 1; i <= 6; i++) expect((await write(sample(`tf.${i}`))).status).toBe(201);
      expect(bench.fastmonFiles.map((r) => r.tf_filename)).toEqual(['tf.3', 'tf.4', 'tf.5', 'tf.6']);
      expect((await get('/api/fastmon-files/?tf_filename=tf.1', { base: bench.url })).body).toEqual([]);
      expect((await write(sample('tf.6'))).status).toBe(400); // still unique among the kept rows
      expect((await write(sample('tf.1'))).status).toBe(201);
    } finally {
      await bench.close();
    }
    await expect(startMonitorDouble({ retainFastmonFiles: 0 })).rejects.toThrow(/at least 1, got 0/);
  });

  it('rejects an unknown stf_file', async () => {
    const answer = await post('/api/fastmon-files/', sample('tf.1', { stf_file: 'nope.stf' }));
    expect(answer).toMatchObject({
      status: 400,
      body: { stf_file: ['Object with stf_filename=nope.stf does not exist.'] },
    });
  });

  it('requires stf_file and tf_filename', async () => {
    const answer = await post('/api/fastmon-files/', { file_size_bytes: 1 });
    expect(answer.body).toEqual({
      stf_file: ['This field is required.'],
      tf_filename: ['This field is required.'],
    });
  });

  it('rejects a non-integer file_size_bytes and a negative one', async () => {
    seedStf();
    const fractional = await post('/api/fastmon-files/', sample('tf.1', { file_size_bytes: 1.5 }));
    expect(fractional.body).toEqual({ file_size_bytes: ['A valid integer is required.'] });
    const negative = await post('/api/fastmon-files/', sample('tf.1', { file_size_bytes: -1 }));
    expect(negative.status).toBe(400);
    const absent = await post('/api/fastmon-files/', sample('tf.1', { file_size_bytes: null }));
    expect(absent).toMatchObject({ status: 201, body: { file_size_bytes: null } });
  });

  it('rejects an upper-case status', async () => {
    seedStf();
    const answer = await post('/api/fastmon-files/', sample('tf.1', { status: 'DONE' }));
    expect(answer.body).toEqual({ status: ['"DONE" is not a valid choice.'] });
  });

  it('rejects a checksum longer than 64 characters', async () => {
    seedStf();
    const answer = await post('/api/fastmon-files/', sample('tf.1', { checksum: 'x'.repeat(65) }));
    expect(answer.body).toEqual({ checksum: ['Ensure this field has no more than 64 characters.'] });
  });

  describe('range rules', () => {
    const rejected = async (extra: Record<string, unknown>, rule: RegExp) => {
      const answer = await post('/api/fastmon-files/', sample('tf.r', extra));
      expect(answer.status).toBe(400);
      expect((answer.body as { non_field_errors: string[] }).non_field_errors.join(' ')).toMatch(rule);
      expect(monitor.fastmonFiles).toHaveLength(0);
    };

    it('requires 0 <= tf_first', async () => {
      seedStf();
      await rejected({ tf_first: -1, tf_last: 8, tf_count: 10 }, /tf_first must be >= 0/);
    });

    it('requires tf_first <= tf_last', async () => {
      seedStf();
      await rejected({ tf_first: 20, tf_last: 19, tf_count: null }, /tf_first must be <= tf_last/);
    });

    it('requires tf_count == tf_last - tf_first + 1', async () => {
      seedStf();
      await rejected({ tf_count: 9 }, /tf_count must equal tf_last - tf_first \+ 1/);
    });

    it('requires tf_last < the parent STF tf_count', async () => {
      seedStf('swf.100001.000001.stf', 15);
      await rejected({}, /tf_last must be < the STF tf_count \(15\)/);
    });

    it('skips the parent bound when the STF has no tf_count, and the rules when ranges are absent', async () => {
      seedStf('swf.100001.000001.stf', null);
      expect(
        (await post('/api/fastmon-files/', sample('tf.1', { tf_first: 5000, tf_last: 5009 }))).status,
      ).toBe(201);
      const bare = { stf_file: 'swf.100001.000001.stf', tf_filename: 'tf.2' };
      expect((await post('/api/fastmon-files/', bare)).body).toMatchObject({
        tf_first: null,
        tf_count: null,
      });
    });

    it('checks a PATCH against the stored values', async () => {
      seedStf();
      const row = monitor.addFastmonFile(sample('tf.1'));
      const answer = await patch(`/api/fastmon-files/${row.tf_file_id}/`, { tf_last: 25 });
      expect(answer.status).toBe(400);
      expect(row.tf_last).toBe(19);
    });
  });

  it('updates a sample by PATCH and deletes it', async () => {
    seedStf();
    const row = monitor.addFastmonFile(sample('tf.1'));
    const updated = await patch(`/api/fastmon-files/${row.tf_file_id}/`, { status: 'done' });
    expect(updated).toMatchObject({ status: 200, body: { status: 'done', tf_filename: 'tf.1' } });
    expect((await call('DELETE', `/api/fastmon-files/${row.tf_file_id}/`)).status).toBe(204);
    expect(monitor.fastmonFiles).toHaveLength(0);
    expect((await post('/api/fastmon-files/', sample('tf.1'))).status).toBe(201);
    expect((await get(`/api/fastmon-files/${row.tf_file_id}/`)).status).toBe(404);
  });

  it('filters by tf_filename, stf_filename (via the parent) and status', async () => {
    seedStf('a.stf');
    seedStf('b.stf');
    monitor.addFastmonFile({ ...sample('tf.a1'), stf_file: 'a.stf' });
    monitor.addFastmonFile({ ...sample('tf.a2'), stf_file: 'a.stf', status: 'done' });
    monitor.addFastmonFile({ ...sample('tf.b1'), stf_file: 'b.stf' });
    const names = async (query: string) =>
      ((await get(`/api/fastmon-files/?${query}`)).body as { tf_filename: string }[]).map(
        (row) => row.tf_filename,
      );
    expect(await names('tf_filename=tf.a2')).toEqual(['tf.a2']);
    expect(await names('tf_filename=missing')).toEqual([]);
    expect(await names('stf_filename=a.stf')).toEqual(['tf.a1', 'tf.a2']);
    expect(await names('stf_filename=a.stf&status=done')).toEqual(['tf.a2']);
    expect(await names('status=registered')).toEqual(['tf.a1', 'tf.b1']);
    expect((await get('/api/fastmon-files/?status=DONE')).status).toBe(400);
  });

  it('paginates with limit/offset and DRF next/previous links', async () => {
    seedStf();
    for (let i = 0; i < 5; i++) monitor.addFastmonFile(sample(`tf.${i}`));
    const page = await get('/api/fastmon-files/?offset=2&limit=2');
    expect(page.body).toMatchObject({
      count: 5,
      next: `${monitor.url}/api/fastmon-files/?limit=2&offset=4`,
      previous: `${monitor.url}/api/fastmon-files/?limit=2`,
    });
    const results = (page.body as { results: { tf_filename: string }[] }).results;
    expect(results.map((row) => row.tf_filename)).toEqual(['tf.2', 'tf.3']);
    const last = await get('/api/fastmon-files/?limit=2&offset=4');
    expect(last.body).toMatchObject({
      next: null,
      previous: `${monitor.url}/api/fastmon-files/?limit=2&offset=2`,
    });
  });
});

describe('test hooks', () => {
  it('logs every request with method, path, status and body', async () => {
    seedStf();
    await post('/api/fastmon-files/', sample('tf.1'));
    await get('/api/fastmon-files/?tf_filename=tf.1');
    expect(monitor.requests.map(({ method, path, status }) => ({ method, path, status }))).toEqual([
      { method: 'POST', path: '/api/fastmon-files/', status: 201 },
      { method: 'GET', path: '/api/fastmon-files/?tf_filename=tf.1', status: 200 },
    ]);
    expect(monitor.requests[0]?.body).toMatchObject({ tf_filename: 'tf.1' });
    expect(typeof monitor.requests[0]?.receivedAt).toBe('number');
    monitor.clearRequests();
    expect(monitor.requests).toHaveLength(0);
  });

  it('seed helpers obey the same rules as the API', () => {
    seedStf();
    expect(() => seedStf()).toThrow(/already exists/);
    expect(() => monitor.addStfFile({ stf_filename: 'x.stf', run: 42 })).toThrow(/Invalid pk/);
  });
});

describe('fault injection', () => {
  it('fail() answers the given status for `times` matching requests, logged as faults', async () => {
    seedStf();
    monitor.fail({ path: '/api/fastmon-files/', method: 'POST', status: 503, times: 2 });
    expect((await post('/api/fastmon-files/', sample('tf.1'))).status).toBe(503);
    expect((await get('/api/fastmon-files/')).status).toBe(200);
    expect((await post('/api/fastmon-files/', sample('tf.1'))).status).toBe(503);
    expect((await post('/api/fastmon-files/', sample('tf.1'))).status).toBe(201);
    expect(monitor.requests.map((r) => r.fault)).toEqual(['fail', undefined, 'fail', undefined]);
    expect(monitor.fastmonFiles).toHaveLength(1);
  });

  it('fail() lasts until clearFaults() without `times`, and can send a non-JSON body', async () => {
    monitor.fail({ path: /systemagents/, status: 502, body: '<html>Proxy Error</html>' });
    for (let i = 0; i < 3; i++) {
      const answer = await post('/api/systemagents/heartbeat/', { instance_name: 'a' });
      expect(answer).toMatchObject({ status: 502, body: '<html>Proxy Error</html>' });
      expect(answer.headers['content-type']).toMatch(/^text\/html/);
    }
    monitor.clearFaults();
    expect((await post('/api/systemagents/heartbeat/', { instance_name: 'a' })).status).toBe(201);
  });

  it('hang() holds a request unanswered and processes it on clearFaults()', async () => {
    seedStf();
    monitor.hang({ path: '/api/fastmon-files/', times: 1 });
    const pending = post('/api/fastmon-files/', sample('tf.1'));
    await until(() => monitor.requests.length === 1);
    expect(monitor.requests[0]).toMatchObject({ status: 0, fault: 'hang' });
    expect(monitor.fastmonFiles).toHaveLength(0);
    monitor.clearFaults();
    expect((await pending).status).toBe(201);
    expect(monitor.requests[0]?.status).toBe(201);
  });

  it('hang() lets a client time out without any write', async () => {
    seedStf();
    monitor.hang();
    await expect(post('/api/fastmon-files/', sample('tf.1'), { timeoutMs: 100 })).rejects.toThrow();
    await until(() => monitor.requests[0]?.aborted === true);
    monitor.clearFaults();
    expect(monitor.fastmonFiles).toHaveLength(0);
    expect(monitor.requests[0]).toMatchObject({ status: 0, fault: 'hang', aborted: true });
  });

  it('delay() slows every answer but commits the write first', async () => {
    seedStf();
    monitor.delay(150);
    const started = performance.now();
    expect((await get('/api/runs/')).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    await expect(post('/api/fastmon-files/', sample('tf.1'), { timeoutMs: 50 })).rejects.toThrow();
    expect(monitor.fastmonFiles).toHaveLength(1);
    await until(() => monitor.requests[1]?.aborted === true);
    expect(monitor.requests[1]?.status).toBe(201);
    monitor.clearFaults();
  });

  it('close() ends keep-alive and hung connections promptly', async () => {
    const double = await startMonitorDouble();
    const dispatcher = new Agent({ keepAliveTimeout: 60_000 });
    try {
      const first = await request(`${double.url}/api/runs/`, { dispatcher });
      await first.body.text();
      double.hang();
      const hung = request(`${double.url}/api/runs/`, { dispatcher }).catch((error: Error) => error);
      await until(() => double.requests.length === 2);
      // close() would wait for the keep-alive timeout (60 s, beyond the test timeout) if it left sockets open.
      await double.close();
      expect(await hung).toBeInstanceOf(Error);
    } finally {
      await dispatcher.close();
    }
  });
});

describe('volume', () => {
  it('registers thousands of samples over keep-alive connections', async () => {
    seedStf('big.stf', null);
    const total = 4000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const answer = await post('/api/fastmon-files/', { stf_file: 'big.stf', tf_filename: `tf.${i}` });
        expect(answer.status).toBe(201);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    // Speed is measured in `npm run bench`, never asserted here.
    expect(monitor.fastmonFiles).toHaveLength(total);
    expect(new Set(monitor.fastmonFiles.map((r) => r.tf_file_id)).size).toBe(total);
  });
});

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('filters are exact, as django-filter applies them (swf-monitor >= 2026-07-31)', () => {
  it('matches stf_filename and tf_filename exactly: a prefix or another case finds nothing', async () => {
    seedStf('swf.100001.000001.stf');
    monitor.addFastmonFile(sample('swf.100001.000001_tf_001.tf'));
    const count = async (path: string) => ((await get(path)).body as unknown[]).length;
    expect(await count('/api/stf-files/?stf_filename=swf.100001.000001.stf')).toBe(1);
    expect(await count('/api/stf-files/?stf_filename=swf.100001')).toBe(0);
    expect(await count('/api/stf-files/?stf_filename=SWF.100001.000001.STF')).toBe(0);
    expect(await count('/api/fastmon-files/?tf_filename=swf.100001.000001_tf_001')).toBe(0);
    expect(await count('/api/fastmon-files/?stf_filename=swf.100001')).toBe(0);
    expect((await get('/api/stf-files/?workflow_id=nope')).status).toBe(400);
  });

  it('returns the tf_count of an StfFile row, which the agent reads when nothing else says', async () => {
    seedStf('swf.100001.000002.stf', 100);
    const rows = (await get('/api/stf-files/?stf_filename=swf.100001.000002.stf')).body as {
      tf_count: number;
    }[];
    expect(rows).toEqual([expect.objectContaining({ tf_count: 100 })]);
  });
});

describe('AppLog (POST /api/logs/, AllowAny, one record per request)', () => {
  const record = (extra: Record<string, unknown> = {}) => ({
    app_name: 'base_agent',
    instance_name: 'fastmon-agent-test-1',
    timestamp: '2026-12-02T09:00:00.123Z',
    level: 20,
    levelname: 'INFO',
    message: 'STF sampled',
    module: 'swf-fastmon',
    funcname: '-',
    lineno: 0,
    process: 1234,
    thread: 0,
    extra_data: { run_id: '101993' },
    ...extra,
  });

  it('takes a record without a token and stores it', async () => {
    const answer = await post('/api/logs/', record(), { auth: null });
    expect(answer).toMatchObject({
      status: 201,
      body: { id: 1, level: 20, timestamp: '2026-12-02T09:00:00.123000Z' },
    });
    expect(monitor.appLogs).toHaveLength(1);
  });

  it('still refuses a wrong token, as DRF authenticates before AllowAny', async () => {
    expect((await post('/api/logs/', record(), { auth: 'Token wrong' })).status).toBe(401);
  });

  it('requires every field but level and extra_data, and refuses blanks', async () => {
    const answer = await post('/api/logs/', { app_name: 'x', funcname: '' }, { auth: null });
    expect(answer.status).toBe(400);
    const errors = answer.body as Record<string, string[]>;
    for (const field of [
      'instance_name',
      'timestamp',
      'levelname',
      'message',
      'module',
      'lineno',
      'process',
      'thread',
    ])
      expect(errors[field], field).toEqual(['This field is required.']);
    expect(errors.funcname).toEqual(['This field may not be blank.']);
    expect(errors.level).toBeUndefined();
    expect(errors.extra_data).toBeUndefined();
  });

  it("takes only Python logging's levels, and one object, not a list", async () => {
    expect(await post('/api/logs/', record({ level: 25 }), { auth: null })).toMatchObject({
      status: 400,
      body: { level: ['"25" is not a valid choice.'] },
    });
    expect(await post('/api/logs/', [record()], { auth: null })).toMatchObject({
      status: 400,
      body: { non_field_errors: ['Invalid data. Expected a dictionary, but got list.'] },
    });
  });
});

describe('workflow executions (the runner creates one before its lifecycle messages)', () => {
  async function definition(): Promise<number> {
    const answer = await post('/api/workflow-definitions/', {
      workflow_name: 'stf_datataking',
      version: '1.0',
      workflow_type: 'simulation',
      definition: 'code',
      created_by: 'tester',
    });
    expect(answer.status).toBe(201);
    return (answer.body as { id: number }).id;
  }

  it('refuses a second definition with the same name and version', async () => {
    await definition();
    const again = await post('/api/workflow-definitions/', {
      workflow_name: 'stf_datataking',
      version: '1.0',
      workflow_type: 'simulation',
      definition: 'code',
      created_by: 'tester',
    });
    expect(again).toMatchObject({
      status: 400,
      body: { non_field_errors: ['The fields workflow_name, version must make a unique set.'] },
    });
  });

  it('creates an execution keyed by execution_id, refuses a duplicate, and updates it by PATCH', async () => {
    const id = await definition();
    const execution = {
      execution_id: 'stf_datataking-tester-0001',
      workflow_definition: id,
      parameter_values: { stf_count: 4 },
      status: 'running',
      start_time: '2026-12-02T09:00:00Z',
      executed_by: 'tester',
      namespace: 'ns1',
    };
    expect((await post('/api/workflow-executions/', execution)).status).toBe(201);
    expect(await post('/api/workflow-executions/', execution)).toMatchObject({
      status: 400,
      body: { execution_id: ['workflow execution with this execution id already exists.'] },
    });
    expect(
      await post('/api/workflow-executions/', { ...execution, execution_id: 'x', workflow_definition: 99 }),
    ).toMatchObject({
      status: 400,
      body: { workflow_definition: ['Invalid pk "99" - object does not exist.'] },
    });
    const done = await patch('/api/workflow-executions/stf_datataking-tester-0001/', {
      status: 'completed',
      end_time: '2026-12-02T09:05:00Z',
    });
    expect(done).toMatchObject({
      status: 200,
      body: { status: 'completed', end_time: '2026-12-02T09:05:00Z' },
    });
    expect(((await get('/api/workflow-executions/?status=completed')).body as unknown[]).length).toBe(1);
    expect(((await get('/api/workflow-executions/?status=running')).body as unknown[]).length).toBe(0);
  });

  it("flags a lifecycle message naming no execution, as the monitor's listener logs an error for it", async () => {
    const id = await definition();
    await post('/api/workflow-executions/', {
      execution_id: 'known-0001',
      workflow_definition: id,
      parameter_values: {},
      start_time: '2026-12-02T09:00:00Z',
      executed_by: 'tester',
    });
    expect(
      monitor.listenerError({ msg_type: 'start_run', run_id: '1', execution_id: 'known-0001' }),
    ).toBeNull();
    expect(
      monitor.listenerError({ msg_type: 'start_run', run_id: '1', execution_id: 'unknown-0001' }),
    ).toMatch(/WorkflowExecution matching query does not exist/);
    // Not a lifecycle message, or no execution named: nothing to join.
    expect(monitor.listenerError({ msg_type: 'stf_ready', execution_id: 'unknown-0001' })).toBeNull();
    expect(monitor.listenerError({ msg_type: 'end_run', run_id: '1' })).toBeNull();
  });

  it('hands out execution sequence numbers from 1', async () => {
    expect((await post('/api/state/next-workflow-execution-id/', { workflow_name: 'w' })).body).toEqual({
      sequence: 1,
      status: 'success',
    });
  });
});
