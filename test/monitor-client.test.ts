import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FastmonError } from '../src/errors.js';
import { MonitorClient } from '../src/monitor/client.js';
import { MonitorHttp } from '../src/monitor/http.js';
import { MonitorRegistrar, type SampleRecord } from '../src/sinks/registrar.js';
import { captureLogs } from './support/logs.js';
import { type MonitorDouble, startMonitorDouble } from './support/monitor-double.js';

let double: MonitorDouble;

beforeAll(async () => {
  double = await startMonitorDouble({ basePath: '/swf-monitor' });
});
afterAll(() => double.close());
beforeEach(() => {
  double.reset();
  double.addStfFile({ stf_filename: 'swf.101993.000001.stf', run_number: 101993, tf_count: 1000 });
});

function client(overrides: Partial<ConstructorParameters<typeof MonitorHttp>[0]> = {}) {
  const logs = captureLogs();
  const http = new MonitorHttp({
    url: double.url,
    token: double.token,
    timeoutMs: 2000,
    connections: 4,
    retries: 2,
    retryDelayMs: 10,
    logger: logs.logger,
    ...overrides,
  });
  const monitor = new MonitorClient(http);
  return { monitor, registrar: new MonitorRegistrar(monitor, logs.logger), logs };
}

const sample: SampleRecord = {
  stfFilename: 'swf.101993.000001.stf',
  tfFilename: 'swf.101993.000001_tf_001.tf',
  tfFirst: 10,
  tfLast: 30,
  tfCount: 21,
  fileSizeBytes: 4096,
  checksum: null,
  metadata: { run_id: '101993' },
};

describe('swf-monitor client', () => {
  it('registers a TF sample as a FastMonFile row under its STF, with its range and byte size', async () => {
    const { registrar } = client();
    const result = await registrar.register(sample);
    expect(result.created).toBe(true);
    expect(double.fastmonFiles).toHaveLength(1);
    expect(double.fastmonFiles[0]).toMatchObject({
      tf_file_id: result.tfFileId,
      stf_file: 'swf.101993.000001.stf',
      tf_filename: 'swf.101993.000001_tf_001.tf',
      tf_first: 10,
      tf_last: 30,
      tf_count: 21,
      file_size_bytes: 4096,
      status: 'registered',
    });
    await registrar.close();
  });

  it('pipelines registrations on one connection and pairs every answer with its own sample', async () => {
    const { registrar } = client({ connections: 1, pipelining: 8 });
    const samples = Array.from({ length: 40 }, (_, i) => ({
      ...sample,
      tfFilename: `swf.101993.000001_tf_${String(i + 1).padStart(3, '0')}.tf`,
      tfFirst: i * 20,
      tfLast: i * 20 + 9,
      tfCount: 10,
    }));
    // A duplicate in the middle: its 400 must come back to it, not to a neighbour in the pipeline.
    samples.push({ ...(samples[17] as SampleRecord) });
    const results = await Promise.all(samples.map((s) => registrar.register(s)));
    expect(double.fastmonFiles).toHaveLength(40);
    const byId = new Map(double.fastmonFiles.map((row) => [row.tf_file_id, row]));
    results.forEach((result, i) => {
      expect(byId.get(result.tfFileId)?.tf_filename).toBe(samples[i]?.tfFilename);
    });
    expect(results.filter((r) => !r.created)).toHaveLength(1);
    expect(results[40]?.tfFileId).toBe(results[17]?.tfFileId);
  });

  it('treats the unique-tf_filename 400 as already registered and returns the existing id', async () => {
    const { registrar } = client();
    const first = await registrar.register(sample);
    const again = await registrar.register(sample);
    expect(again).toEqual({ tfFileId: first.tfFileId, created: false });
    expect(double.fastmonFiles).toHaveLength(1);
    await registrar.close();
  });

  it('logs a conflict when the existing row has another range, and keeps it', async () => {
    const { registrar, logs } = client();
    const first = await registrar.register(sample);
    const other = await registrar.register({ ...sample, tfFirst: 11, tfLast: 31 });
    expect(other.tfFileId).toBe(first.tfFileId);
    expect(double.fastmonFiles[0]?.tf_first).toBe(10);
    expect(logs.find((r) => r.code === 'REGISTRATION_CONFLICT')?.conflict).toBe('range [10, 30] != [11, 31]');
    await registrar.close();
  });

  it('fails clearly, quoting swf-monitor, when the STF is unknown to it', async () => {
    const { registrar } = client();
    const err = await registrar
      .register({ ...sample, stfFilename: 'swf.101993.000404.stf' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FastmonError);
    expect((err as FastmonError).code).toBe('MONITOR_REJECTED');
    expect((err as FastmonError).message).toMatch(
      /HTTP 400: .*stf_filename=swf\.101993\.000404\.stf does not exist/,
    );
    // A 4xx is not retried.
    expect(double.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
    await registrar.close();
  });

  it('retries 5xx with backoff and succeeds when the monitor recovers', async () => {
    const { registrar, logs } = client();
    double.fail({ path: '/fastmon-files/', status: 503, times: 2 });
    const result = await registrar.register(sample);
    expect(result.created).toBe(true);
    expect(double.requests.filter((r) => r.method === 'POST').map((r) => r.status)).toEqual([503, 503, 201]);
    expect(logs.records().filter((r) => r.msg === 'swf-monitor request failed; retrying')).toHaveLength(2);
    await registrar.close();
  });

  it('gives up after the configured retries with MONITOR_UNAVAILABLE, and retries timeouts too', async () => {
    const { registrar } = client({ retries: 1 });
    double.fail({ path: '/fastmon-files/', status: 500 });
    const err = (await registrar.register(sample).catch((e: unknown) => e)) as FastmonError;
    expect(err.code).toBe('MONITOR_UNAVAILABLE');
    expect(err.message).toMatch(/failed after 2 attempt\(s\): HTTP 500/);
    double.clearFaults();
    double.clearRequests();
    double.hang({ path: '/fastmon-files/' });
    const { registrar: slow } = client({ retries: 1, timeoutMs: 200 });
    const timeout = (await slow.register(sample).catch((e: unknown) => e)) as FastmonError;
    expect(timeout.code).toBe('MONITOR_UNAVAILABLE');
    expect(double.requests.filter((r) => r.method === 'POST')).toHaveLength(2);
    double.clearFaults();
    await registrar.close();
    await slow.close();
  });

  it('sends the token on writes and never logs it, even when it is refused', async () => {
    const { registrar, logs } = client({ token: 'f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed' });
    const err = (await registrar.register(sample).catch((e: unknown) => e)) as FastmonError;
    expect(err.code).toBe('MONITOR_REJECTED');
    expect(err.message).toMatch(/HTTP 401: .*Invalid token/);
    expect(logs.text()).not.toContain('f00dfeedf00dfeed');
    expect(err.message).not.toContain('f00dfeedf00dfeed');
    await registrar.close();
  });

  it('refuses to follow redirects and says where to look', async () => {
    const { monitor } = client();
    double.fail({ path: '/fastmon-files/', status: 302, headers: { location: 'https://sso.example/login' } });
    const err = (await monitor
      .createFastMonFile({ ...toRowLike() })
      .catch((e: unknown) => e)) as FastmonError;
    expect(err.code).toBe('MONITOR_REDIRECT');
    expect(err.message).toMatch(/Authorization header/);
    await monitor.http.close();
  });

  it('reads an answer with fields it does not know, as swf-monitor adds columns', async () => {
    const { monitor } = client();
    const row = { ...toRowLike(), tf_file_id: 'a1b2c3d4-0000-4000-8000-000000000001', new_column: [1, 2] };
    double.fail({ path: '/fastmon-files/', method: 'POST', status: 201, body: row, times: 1 });
    await expect(monitor.createFastMonFile(toRowLike())).resolves.toMatchObject({
      tf_file_id: row.tf_file_id,
      tf_filename: row.tf_filename,
    });
    await monitor.http.close();
  });

  it('refuses a created row without its id with MONITOR_BAD_RESPONSE naming the field, not undefined later', async () => {
    const { registrar } = client();
    double.fail({
      path: '/fastmon-files/',
      method: 'POST',
      status: 201,
      body: { status: 'registered' },
      times: 1,
    });
    const err = (await registrar.register(sample).catch((e: unknown) => e)) as FastmonError;
    expect(err.code).toBe('MONITOR_BAD_RESPONSE');
    expect(err.message).toMatch(/POST \/fastmon-files\/ answered a body fastmon cannot read \(tf_file_id: /);
    expect(err.message).toContain('{"status":"registered"}');
    await registrar.close();
  });

  it('refuses a list answer of another shape and a run id that is not a number', async () => {
    const { monitor } = client();
    double.fail({ path: '/runs/', method: 'GET', status: 200, body: { rows: [] }, times: 1 });
    const list = (await monitor.findRun(101993).catch((e: unknown) => e)) as FastmonError;
    expect(list.code).toBe('MONITOR_BAD_RESPONSE');
    expect(list.message).toMatch(/GET \/runs\//);
    double.fail({
      path: '/runs/',
      method: 'GET',
      status: 200,
      body: [{ run_id: 'seven', run_number: 101993 }],
      times: 1,
    });
    const id = (await monitor.findRun(101993).catch((e: unknown) => e)) as FastmonError;
    expect(id.code).toBe('MONITOR_BAD_RESPONSE');
    expect(id.details?.issues).toEqual([expect.stringMatching(/^0\.run_id: /)]);
    await monitor.http.close();
  });

  it('reads both list shapes: the plain array and the ?limit= page', async () => {
    const { monitor } = client();
    const page = { count: 1, next: null, previous: null, results: [{ ...toRowLike(), tf_file_id: 'x-1' }] };
    double.fail({ path: '/fastmon-files/', method: 'GET', status: 200, body: page, times: 1 });
    expect(await monitor.findFastMonFile(sample.tfFilename)).toMatchObject({ tf_file_id: 'x-1' });
    expect(await monitor.findStfFile('swf.101993.000001.stf')).toMatchObject({ tf_count: 1000 });
    await monitor.http.close();
  });

  it('gets agent ids, registers the subscriber once and records heartbeats', async () => {
    const { monitor } = client();
    const a = await monitor.nextAgentId();
    const b = await monitor.nextAgentId();
    expect(b).toBe(a + 1);
    await monitor.registerSubscriber('fastmon-agent-u-1-/topic/epictopic', 'd');
    await monitor.registerSubscriber('fastmon-agent-u-1-/topic/epictopic', 'd');
    expect(double.subscribers).toHaveLength(1);
    await monitor.heartbeat({
      instance_name: 'fastmon-agent-u-1',
      agent_type: 'fastmon',
      status: 'OK',
      description: 'fastmon agent. MQ: connected',
      mq_connected: true,
      pid: 1,
      hostname: 'h',
      operational_state: 'READY',
      namespace: 'torre2',
    });
    expect(double.agents[0]).toMatchObject({
      instance_name: 'fastmon-agent-u-1',
      agent_type: 'fastmon',
      namespace: 'torre2',
    });
    await monitor.http.close();
  });
});

function toRowLike() {
  return {
    stf_file: sample.stfFilename,
    tf_filename: sample.tfFilename,
    file_size_bytes: null,
    checksum: null,
    status: 'registered',
    metadata: null,
    tf_first: 1,
    tf_last: 2,
    tf_count: 2,
  };
}
