import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { MonitorLogShipper } from '../../src/log/monitor-logs.js';
import { startTestAgent, type TestAgent, type TestAgentOptions } from '../support/agent.js';
import { type Collector, TestPeer, uniqueTopic } from '../support/broker.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

// The testbed's own producers against the agent (issue 13): the workflow runner's end_run overtaking
// the data agent's last stf_ready, StfFile.tf_count, retries, logs in AppLog, the metrics port.

const RUN = '102001';
let double: MonitorDouble;
let peer: TestPeer;
let topic: string;
let namespace: string;
let seen: Collector;
let running: TestAgent[] = [];

beforeAll(async () => {
  double = await startMonitorDouble();
  peer = await TestPeer.connect();
});
afterAll(async () => {
  await peer.close();
  await double.close();
});
beforeEach(async () => {
  double.reset();
  for (let seq = 1; seq <= 6; seq++)
    double.addStfFile({ stf_filename: stfName(seq), run_number: Number(RUN) });
  topic = uniqueTopic('interop');
  namespace = `ns-${randomUUID().slice(0, 8)}`;
  seen = await peer.collect(topic);
});
afterEach(async () => {
  await Promise.all(running.map((a) => a.stop()));
  running = [];
});

function stfName(seq: number): string {
  return `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
}

/** The example data agent's stf_ready: no tf_count, size, checksum or URL. */
function stfReady(seq: number, extra: Record<string, unknown> = {}) {
  const base = { msg_type: 'stf_ready', namespace, filename: stfName(seq), run_id: RUN, file_url: null };
  return {
    ...base,
    size_bytes: null,
    checksum: null,
    state: 'run',
    substate: 'physics',
    sequence: seq,
    ...extra,
  };
}

function lifecycle(msgType: string, extra: Record<string, unknown> = {}) {
  return { msg_type: msgType, namespace, execution_id: 'stf_datataking-test-0002', run_id: RUN, ...extra };
}

async function agent(env: Record<string, string> = {}, options: Partial<TestAgentOptions> = {}) {
  const a = await startTestAgent({
    monitor: double,
    env: { FASTMON_SUBSCRIPTION: topic, FASTMON_BROADCAST: topic, FASTMON_SEED: 'interop', ...env },
    args: ['--namespace', namespace],
    ...options,
  });
  running.push(a);
  return a;
}

async function startRun(): Promise<void> {
  await peer.publish(topic, lifecycle('run_imminent', { state: 'beam', substate: 'not_ready' }));
  await peer.publish(topic, lifecycle('start_run', { state: 'run', substate: 'physics' }));
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('run totals when end_run overtakes the last stf_ready (the testbed runner and data agent)', () => {
  it('waits for the STFs end_run announced: the final summary and status count every STF of the run', async () => {
    await agent();
    await startRun();
    double.delay(150); // registrations still in flight when end_run arrives
    for (const seq of [1, 2, 3]) await peer.publish(topic, stfReady(seq));
    await peer.publish(topic, lifecycle('end_run', { total_stf_files: 4 }));
    // The data agent registers the last StfFile, then announces it: half a second after end_run.
    await new Promise((r) => setTimeout(r, 500));
    await peer.publish(topic, stfReady(4));
    await seen.waitFor((c) => c.bodies('fastmon_status').length === 1, 20_000, 'fastmon_status');

    const status = seen.bodies('fastmon_status')[0] as Record<string, unknown>;
    expect(status).toMatchObject({
      run_id: RUN,
      stfs_received: 4,
      stfs_sampled: 4,
      tf_files_registered: 28,
      stfs_expected: 4,
      stfs_missing: 0,
      grace_expired: false,
    });
    expect(String(status.message)).toMatch(
      /4 of 4 STFs sampled \(end_run announced 4\), 28 TF samples registered/,
    );
    const final = seen.bodies('fastmon_summary').filter((b) => b.final === true);
    expect(final).toHaveLength(1);
    expect(final[0]).toMatchObject({ stfs_seen: 4, tf_files_registered: 28 });
    expect(double.fastmonFiles).toHaveLength(28);
    double.clearFaults();
  });

  it('says when the grace ran out and how many were missing; a late STF is counted and reported', async () => {
    const a = await agent({ FASTMON_END_RUN_GRACE_S: '0.5' });
    await startRun();
    await peer.publish(topic, stfReady(1));
    await peer.publish(topic, lifecycle('end_run', { total_stf_files: 3 }));
    await peer.publish(topic, lifecycle('end_run', { total_stf_files: 3 })); // redelivered: one ending only
    await seen.waitFor((c) => c.bodies('fastmon_status').length === 1, 20_000, 'the final fastmon_status');
    expect(seen.bodies('fastmon_status')[0]).toMatchObject({
      stfs_received: 1,
      stfs_expected: 3,
      stfs_missing: 2,
      grace_expired: true,
      update: false,
    });
    expect(String(seen.bodies('fastmon_status')[0]?.message)).toMatch(
      /2 announced STFs missing when the 0.5 s grace ran out/,
    );
    expect(a.logs.find((r) => r.code === 'RUN_INCOMPLETE')).toMatchObject({ missing: 2, expected: 3 });

    await peer.publish(topic, stfReady(2));
    await seen.waitFor(
      (c) => c.bodies('fastmon_status').length === 2,
      20_000,
      'the follow-up fastmon_status',
    );
    expect(seen.bodies('fastmon_status')[1]).toMatchObject({
      stfs_received: 2,
      stfs_sampled: 2,
      stfs_late: 1,
      stfs_missing: 1,
      update: true,
    });
    expect(a.logs.find((r) => r.code === 'STF_AFTER_RUN_END')?.stf).toBe(stfName(2));
    expect((await a.agent.metrics.stfsLate.get()).values[0]?.value).toBe(1);
    expect((await a.agent.metrics.runsIncomplete.get()).values[0]?.value).toBe(1);
    // A redelivery of a late STF is a duplicate, not one more late STF.
    await peer.publish(topic, stfReady(2));
    await until(() => a.agent.runs.get(RUN)?.counts.stfsDuplicate === 1, 'the duplicate');
    expect(a.agent.runs.get(RUN)?.counts.stfsLate).toBe(1);
  });
});

describe("tf_count from swf-monitor's StfFile row", () => {
  it('samples within the StfFile tf_count when neither the header nor the message has one', async () => {
    double.addStfFile({ stf_filename: stfName(9), run_number: Number(RUN), tf_count: 100 });
    await agent();
    double.clearRequests();
    await peer.publish(topic, stfReady(9));
    await until(() => double.fastmonFiles.length === 7, 'seven samples');
    for (const row of double.fastmonFiles) {
      expect(row.tf_last).toBeLessThan(100);
      expect(row.metadata).toMatchObject({ stf_tf_count: 100, tf_count_source: 'stf_file' });
    }
    const lookups = double.requests.filter((r) => r.path.includes('/stf-files/'));
    expect(lookups.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /api/stf-files/?stf_filename=${stfName(9)}`,
    ]);
  });

  it('asks swf-monitor nothing when the message carries tf_count, and falls back to the default without a row value', async () => {
    double.addStfFile({ stf_filename: stfName(9), run_number: Number(RUN), tf_count: 100 });
    await agent();
    double.clearRequests();
    await peer.publish(topic, stfReady(9, { tf_count: 50 }));
    await peer.publish(topic, stfReady(1));
    await until(() => double.fastmonFiles.length === 14, 'fourteen samples');
    const byStf = (name: string) => double.fastmonFiles.filter((r) => r.stf_file === name);
    expect(
      byStf(stfName(9)).every(
        (r) => (r.metadata as { tf_count_source: string }).tf_count_source === 'message',
      ),
    ).toBe(true);
    expect(
      byStf(stfName(1)).every(
        (r) => (r.metadata as { tf_count_source: string }).tf_count_source === 'default',
      ),
    ).toBe(true);
    const lookups = double.requests.filter((r) => r.path.includes('/stf-files/'));
    expect(lookups.map((r) => r.path)).toEqual([`/api/stf-files/?stf_filename=${stfName(1)}`]);
  });
});

describe('counts per broker delivery', () => {
  it('counts an stf_ready retried five times for an STF swf-monitor does not know as one STF, five attempts', async () => {
    const a = await agent();
    await startRun();
    await peer.publish(topic, stfReady(77, { filename: `swf.${RUN}.000077.stf` }));
    // Settled: the outcome metric counts the delivery once its last attempt is acknowledged.
    await until(
      async () => (await a.agent.metrics.stfs.get()).values.length > 0,
      'the delivery to settle',
      20_000,
    );
    expect(a.agent.runs.get(RUN)?.counts).toMatchObject({
      stfsReceived: 1,
      stfAttempts: 5,
      stfsSampled: 1,
      tfsFailed: 7,
      tfsRegistered: 0,
    });
    expect(a.agent.runs.get(RUN)?.errors).toEqual({ MONITOR_REJECTED: 7 });
    expect((await a.agent.metrics.stfAttempts.get()).values[0]?.value).toBe(5);
    const outcomes = (await a.agent.metrics.stfs.get()).values;
    expect(outcomes).toEqual([expect.objectContaining({ labels: { outcome: 'sampled' }, value: 1 })]);
  });
});

describe("the agent's log records in swf-monitor's AppLog table", () => {
  async function shippingAgent(env: Record<string, string> = {}) {
    const shipper = new MonitorLogShipper({ url: double.url, maxQueue: 100, flushMs: 50 });
    const lines: string[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: { write: (line: string) => lines.push(line) },
      ship: { shipper, level: 'info' },
    });
    const a = await agent(env, { logger, logShipper: shipper });
    return { a, shipper, lines, logger };
  }

  it('ships info and above as AppLog rows named after the agent, secrets masked, debug kept local', async () => {
    const { a, lines, logger } = await shippingAgent();
    await startRun();
    await peer.publish(topic, stfReady(1));
    await until(() => double.appLogs.some((r) => r.message === 'STF sampled'), 'the STF sampled record');
    logger.warn({ code: 'TEST_CODE', run: RUN }, `token ${double.token} must not leave the agent`);
    await until(() => double.appLogs.some((r) => r.funcname === 'TEST_CODE'), 'the warning');
    const warning = double.appLogs.find((r) => r.funcname === 'TEST_CODE');
    expect(warning).toMatchObject({
      app_name: 'base_agent',
      instance_name: a.agent.agentName,
      level: 30,
      levelname: 'WARNING',
      process: process.pid,
      extra_data: expect.objectContaining({ run_id: RUN, code: 'TEST_CODE' }),
    });
    expect(warning?.message).toBe('token [redacted] must not leave the agent');
    expect(JSON.stringify(double.appLogs)).not.toContain(double.token);
    expect(double.appLogs.every((r) => r.level >= 20)).toBe(true);
    expect(lines.some((l) => l.includes('"level":"debug"'))).toBe(true);
    const posts = double.requests.filter((r) => r.path === '/api/logs/');
    expect(posts.every((r) => r.status === 201)).toBe(true);
  });

  it('costs a counter, not a crash, when swf-monitor refuses logs, and never holds up shutdown', async () => {
    double.fail({ path: '/api/logs/', status: 400, body: { message: ['This field is required.'] } });
    const { a, lines, logger } = await shippingAgent();
    await startRun();
    await peer.publish(topic, stfReady(1));
    await until(() => double.fastmonFiles.length === 7, 'the samples, logs refused or not');
    await until(
      async () =>
        ((await a.agent.metrics.logRecords.get()).values.find((v) => v.labels.result === 'refused')?.value ??
          0) > 0,
      'the refused counter',
    );
    expect(lines.filter((l) => l.includes('MONITOR_LOGS_REFUSED'))).toHaveLength(1);
    expect(double.appLogs.some((r) => r.message.includes('MONITOR_LOGS_REFUSED'))).toBe(false);

    double.clearFaults();
    double.hang({ path: '/api/logs/' });
    for (let i = 0; i < 20; i++) logger.info({ i }, 'something worth shipping');
    const started = Date.now();
    await a.stop();
    running = running.filter((r) => r !== a);
    expect(Date.now() - started).toBeLessThan(6000);
    const dropped = (await a.agent.metrics.logRecords.get()).values.find(
      (v) => v.labels.result === 'dropped',
    );
    expect(dropped?.value ?? 0).toBeGreaterThan(0);
    double.clearFaults();
  });
});

describe('several agents on one host', () => {
  it('gives each agent its own metrics port by default, in the start-up log and the heartbeat', async () => {
    const env = { FASTMON_HTTP_PORT: '', FASTMON_HEARTBEAT_INTERVAL_S: '60' };
    const first = await agent(env);
    const second = await agent(env);
    const ports = [first.agent.httpPort, second.agent.httpPort];
    expect(ports[0]).not.toBeNull();
    expect(ports[1]).not.toBeNull();
    expect(ports[0]).not.toBe(ports[1]);
    for (const a of [first, second]) {
      const start = a.logs.find((r) => r.msg === 'fastmon agent starting');
      expect(start?.metricsPort).toBe(a.agent.httpPort);
      await until(
        () => double.heartbeats.some((h) => h.body.instance_name === a.agent.agentName),
        'a heartbeat',
      );
      const beat = double.heartbeats.find((h) => h.body.instance_name === a.agent.agentName);
      expect(beat?.body.agent_url).toBe(`http://127.0.0.1:${a.agent.httpPort}/metrics`);
      expect(String(beat?.body.description)).toContain(`metrics port ${a.agent.httpPort}`);
      const res = await fetch(`http://127.0.0.1:${a.agent.httpPort}/healthz`);
      expect(((await res.json()) as { agent: string }).agent).toBe(a.agent.agentName);
    }
  });

  it('opens no port for scan-like uses unless one is set, and never takes an explicit port that is in use', async () => {
    const quiet = await agent({ FASTMON_HTTP_PORT: '' }, { metricsPort: false });
    expect(quiet.agent.httpPort).toBeNull();
    const holder = await agent({ FASTMON_HTTP_PORT: '0' });
    const taken = String(holder.agent.httpPort);
    const explicit = await agent({ FASTMON_HTTP_PORT: taken }, { metricsPort: false });
    expect(explicit.agent.httpPort).toBeNull();
    expect(explicit.logs.find((r) => r.code === 'METRICS_PORT_IN_USE')).toBeDefined();
  });
});
