import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { MonitorLogShipper } from '../../src/log/monitor-logs.js';
import { agentTestBed } from '../support/agent.js';

// The testbed's own producers against the agent (issue 13): the workflow runner's end_run overtaking
// the data agent's last stf_ready, StfFile.tf_count, retries, logs in AppLog, the metrics port.

const RUN = '102001';

const bed = agentTestBed({
  label: 'interop',
  run: RUN,
  stfs: 6,
  namespaced: true,
  env: { FASTMON_SEED: 'interop' },
});

const { stfName } = bed;

/** The example data agent's stf_ready: no tf_count, size, checksum or URL. */
function stfReady(seq: number, extra: Record<string, unknown> = {}) {
  const base = {
    msg_type: 'stf_ready',
    namespace: bed.namespace,
    filename: stfName(seq),
    run_id: RUN,
    file_url: null,
  };
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
  return {
    msg_type: msgType,
    namespace: bed.namespace,
    execution_id: 'stf_datataking-test-0002',
    run_id: RUN,
    ...extra,
  };
}

async function startRun(): Promise<void> {
  await bed.peer.publish(bed.topic, lifecycle('run_imminent', { state: 'beam', substate: 'not_ready' }));
  await bed.peer.publish(bed.topic, lifecycle('start_run', { state: 'run', substate: 'physics' }));
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
    await bed.agent();
    await startRun();
    bed.double.delay(150); // registrations still in flight when end_run arrives
    for (const seq of [1, 2, 3]) await bed.peer.publish(bed.topic, stfReady(seq));
    await bed.peer.publish(bed.topic, lifecycle('end_run', { total_stf_files: 4 }));
    // The data agent registers the last StfFile, then announces it: half a second after end_run.
    await new Promise((r) => setTimeout(r, 500));
    await bed.peer.publish(bed.topic, stfReady(4));
    await bed.seen.waitFor((c) => c.bodies('fastmon_status').length === 1, 20_000, 'fastmon_status');

    const status = bed.seen.bodies('fastmon_status')[0] as Record<string, unknown>;
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
    const final = bed.seen.bodies('fastmon_summary').filter((b) => b.final === true);
    expect(final).toHaveLength(1);
    expect(final[0]).toMatchObject({ stfs_seen: 4, tf_files_registered: 28 });
    expect(bed.double.fastmonFiles).toHaveLength(28);
    bed.double.clearFaults();
  });

  it('says when the grace ran out and how many were missing; a late STF is counted and reported', async () => {
    const a = await bed.agent({ FASTMON_END_RUN_GRACE_S: '0.5' });
    await startRun();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, lifecycle('end_run', { total_stf_files: 3 }));
    await bed.peer.publish(bed.topic, lifecycle('end_run', { total_stf_files: 3 })); // redelivered: one ending only
    await bed.seen.waitFor(
      (c) => c.bodies('fastmon_status').length === 1,
      20_000,
      'the final fastmon_status',
    );
    expect(bed.seen.bodies('fastmon_status')[0]).toMatchObject({
      stfs_received: 1,
      stfs_expected: 3,
      stfs_missing: 2,
      grace_expired: true,
      update: false,
    });
    expect(String(bed.seen.bodies('fastmon_status')[0]?.message)).toMatch(
      /2 announced STFs missing when the 0.5 s grace ran out/,
    );
    expect(a.logs.find((r) => r.code === 'RUN_INCOMPLETE')).toMatchObject({ missing: 2, expected: 3 });

    await bed.peer.publish(bed.topic, stfReady(2));
    await bed.seen.waitFor(
      (c) => c.bodies('fastmon_status').length === 2,
      20_000,
      'the follow-up fastmon_status',
    );
    expect(bed.seen.bodies('fastmon_status')[1]).toMatchObject({
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
    await bed.peer.publish(bed.topic, stfReady(2));
    await until(() => a.agent.runs.get(RUN)?.counts.stfsDuplicate === 1, 'the duplicate');
    expect(a.agent.runs.get(RUN)?.counts.stfsLate).toBe(1);
  });
});

describe("tf_count from swf-monitor's StfFile row", () => {
  it('samples within the StfFile tf_count when neither the header nor the message has one', async () => {
    bed.double.addStfFile({ stf_filename: stfName(9), run_number: Number(RUN), tf_count: 100 });
    await bed.agent();
    bed.double.clearRequests();
    await bed.peer.publish(bed.topic, stfReady(9));
    await until(() => bed.double.fastmonFiles.length === 7, 'seven samples');
    for (const row of bed.double.fastmonFiles) {
      expect(row.tf_last).toBeLessThan(100);
      expect(row.metadata).toMatchObject({ stf_tf_count: 100, tf_count_source: 'stf_file' });
    }
    const lookups = bed.double.requests.filter((r) => r.path.includes('/stf-files/'));
    expect(lookups.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /api/stf-files/?stf_filename=${stfName(9)}`,
    ]);
  });

  it('asks swf-monitor nothing when the message carries tf_count, and falls back to the default without a row value', async () => {
    bed.double.addStfFile({ stf_filename: stfName(9), run_number: Number(RUN), tf_count: 100 });
    await bed.agent();
    bed.double.clearRequests();
    await bed.peer.publish(bed.topic, stfReady(9, { tf_count: 50 }));
    await bed.peer.publish(bed.topic, stfReady(1));
    await until(() => bed.double.fastmonFiles.length === 14, 'fourteen samples');
    const byStf = (name: string) => bed.double.fastmonFiles.filter((r) => r.stf_file === name);
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
    const lookups = bed.double.requests.filter((r) => r.path.includes('/stf-files/'));
    expect(lookups.map((r) => r.path)).toEqual([`/api/stf-files/?stf_filename=${stfName(1)}`]);
  });
});

describe('counts per broker delivery', () => {
  it('counts an stf_ready retried five times for an STF swf-monitor does not know as one STF, five attempts', async () => {
    const a = await bed.agent();
    await startRun();
    await bed.peer.publish(bed.topic, stfReady(77, { filename: `swf.${RUN}.000077.stf` }));
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
    const shipper = new MonitorLogShipper({ url: bed.double.url, maxQueue: 100, flushMs: 50 });
    const lines: string[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: { write: (line: string) => lines.push(line) },
      ship: { shipper, level: 'info' },
    });
    const a = await bed.agent(env, { logger, logShipper: shipper });
    return { a, shipper, lines, logger };
  }

  it('ships info and above as AppLog rows named after the agent, secrets masked, debug kept local', async () => {
    const { a, lines, logger } = await shippingAgent();
    await startRun();
    await bed.peer.publish(bed.topic, stfReady(1));
    await until(() => bed.double.appLogs.some((r) => r.message === 'STF sampled'), 'the STF sampled record');
    logger.warn({ code: 'TEST_CODE', run: RUN }, `token ${bed.double.token} must not leave the agent`);
    await until(() => bed.double.appLogs.some((r) => r.funcname === 'TEST_CODE'), 'the warning');
    const warning = bed.double.appLogs.find((r) => r.funcname === 'TEST_CODE');
    expect(warning).toMatchObject({
      app_name: 'base_agent',
      instance_name: a.agent.agentName,
      level: 30,
      levelname: 'WARNING',
      process: process.pid,
      extra_data: expect.objectContaining({ run_id: RUN, code: 'TEST_CODE' }),
    });
    expect(warning?.message).toBe('token [redacted] must not leave the agent');
    expect(JSON.stringify(bed.double.appLogs)).not.toContain(bed.double.token);
    expect(bed.double.appLogs.every((r) => r.level >= 20)).toBe(true);
    expect(lines.some((l) => l.includes('"level":"debug"'))).toBe(true);
    const posts = bed.double.requests.filter((r) => r.path === '/api/logs/');
    expect(posts.every((r) => r.status === 201)).toBe(true);
  });

  it('costs a counter, not a crash, when swf-monitor refuses logs, and never holds up shutdown', async () => {
    bed.double.fail({ path: '/api/logs/', status: 400, body: { message: ['This field is required.'] } });
    const { a, lines, logger } = await shippingAgent();
    await startRun();
    await bed.peer.publish(bed.topic, stfReady(1));
    await until(() => bed.double.fastmonFiles.length === 7, 'the samples, logs refused or not');
    await until(
      async () =>
        ((await a.agent.metrics.logRecords.get()).values.find((v) => v.labels.result === 'refused')?.value ??
          0) > 0,
      'the refused counter',
    );
    expect(lines.filter((l) => l.includes('MONITOR_LOGS_REFUSED'))).toHaveLength(1);
    expect(bed.double.appLogs.some((r) => r.message.includes('MONITOR_LOGS_REFUSED'))).toBe(false);

    bed.double.clearFaults();
    bed.double.hang({ path: '/api/logs/' });
    for (let i = 0; i < 20; i++) logger.info({ i }, 'something worth shipping');
    const started = Date.now();
    await a.stop();
    bed.running = bed.running.filter((r) => r !== a);
    expect(Date.now() - started).toBeLessThan(6000);
    const dropped = (await a.agent.metrics.logRecords.get()).values.find(
      (v) => v.labels.result === 'dropped',
    );
    expect(dropped?.value ?? 0).toBeGreaterThan(0);
    bed.double.clearFaults();
  });
});

describe('several agents on one host', () => {
  it('gives each agent its own metrics port by default, in the start-up log and the heartbeat', async () => {
    const env = { FASTMON_HTTP_PORT: '', FASTMON_HEARTBEAT_INTERVAL_S: '60' };
    const first = await bed.agent(env);
    const second = await bed.agent(env);
    const ports = [first.agent.httpPort, second.agent.httpPort];
    expect(ports[0]).not.toBeNull();
    expect(ports[1]).not.toBeNull();
    expect(ports[0]).not.toBe(ports[1]);
    for (const a of [first, second]) {
      const start = a.logs.find((r) => r.msg === 'fastmon agent starting');
      expect(start?.metricsPort).toBe(a.agent.httpPort);
      await until(
        () => bed.double.heartbeats.some((h) => h.body.instance_name === a.agent.agentName),
        'a heartbeat',
      );
      const beat = bed.double.heartbeats.find((h) => h.body.instance_name === a.agent.agentName);
      expect(beat?.body.agent_url).toBe(`http://127.0.0.1:${a.agent.httpPort}/metrics`);
      expect(String(beat?.body.description)).toContain(`metrics port ${a.agent.httpPort}`);
      const res = await fetch(`http://127.0.0.1:${a.agent.httpPort}/healthz`);
      expect(((await res.json()) as { agent: string }).agent).toBe(a.agent.agentName);
    }
  });

  it('opens no port for scan-like uses unless one is set, and never takes an explicit port that is in use', async () => {
    const quiet = await bed.agent({ FASTMON_HTTP_PORT: '' }, { metricsPort: false });
    expect(quiet.agent.httpPort).toBeNull();
    const holder = await bed.agent({ FASTMON_HTTP_PORT: '0' });
    const taken = String(holder.agent.httpPort);
    const explicit = await bed.agent({ FASTMON_HTTP_PORT: taken }, { metricsPort: false });
    expect(explicit.agent.httpPort).toBeNull();
    expect(explicit.logs.find((r) => r.code === 'METRICS_PORT_IN_USE')).toBeDefined();
  });
});
