// Runs alone (vitest.chaos.config.ts, after the main suite): it kills and restarts the shared broker
// (the one FASTMON_TEST_BROKER selects, through its own setup script).

import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { brokerAddress, brokerKind } from '../support/broker.js';
import { ChaosHarness } from '../support/chaos.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const STFS = 2000;
const RUN = 109000;

const chaos = new ChaosHarness('chaos');
let double: MonitorDouble | null = null;

afterAll(async () => {
  await chaos.close();
  await double?.close();
  // Leave the broker up for whatever runs next.
  await chaos.brokerScript('start');
});

function name(seq: number): string {
  return `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
}

describe(`chaos (${brokerKind() === 'artemis' ? 'Artemis' : 'Classic'}): broker, monitor and agent failures during a stream of 2,000 stf_ready`, () => {
  it('ends with exactly 7 × 2,000 FastMonFile rows and every sample notified at least once', async () => {
    double = await startMonitorDouble();
    for (let seq = 1; seq <= STFS; seq++) double.addStfFile({ stf_filename: name(seq), run_number: RUN });
    const topic = `/topic/fastmon.chaos.${randomUUID().slice(0, 8)}`;
    const out = `${topic}.out`;

    // The observer: a durable subscriber of the notifications, so none is lost while it reconnects.
    const observed = await chaos.observe(out);

    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-chaos-'));
    const { host, port } = brokerAddress();
    const env = {
      ACTIVEMQ_HOST: host,
      ACTIVEMQ_PORT: String(port),
      SWF_MONITOR_URL: double.url,
      SWF_API_TOKEN: double.token,
      SWF_LOG_LEVEL: 'warn',
      FASTMON_SUBSCRIPTION: topic,
      FASTMON_BROADCAST: out,
      FASTMON_CLIENT_ID: `fastmon-chaos-agent-${randomUUID().slice(0, 6)}`,
      FASTMON_DURABLE_SUBSCRIPTION: 'fastmon',
      // The local store, outbox included, survives each kill of the agent.
      FASTMON_CATALOG: path.join(dir, 'fastmon.sqlite'),
      FASTMON_MONITOR_RETRIES: '1',
      FASTMON_MONITOR_RETRY_DELAY_MS: '100',
      FASTMON_MONITOR_TIMEOUT_MS: '1000',
      FASTMON_BROKER_HEARTBEAT_MS: '2000',
      FASTMON_RECONNECT_MAX_MS: '1000',
      FASTMON_HTTP_PORT: '-1',
      FASTMON_HEARTBEAT_INTERVAL_S: '5',
    };
    chaos.startAgent(env);
    const deadline = Date.now() + 30_000;
    while (!chaos.agentLog.includes('subscribed') && double.heartbeats.length === 0 && Date.now() < deadline)
      await sleep(100);
    await sleep(1500);

    // The producer: persistent messages (as daqsim sends them), republished when a receipt is lost.
    const publish = await chaos.producer();
    const publishing = publish(
      topic,
      RUN,
      Array.from({ length: STFS }, (_, i) => name(i + 1)),
    );

    const faults = (async () => {
      await sleep(1500);
      process.kill(chaos.brokerPid(), 'SIGKILL'); // broker killed mid-stream
      await sleep(500);
      await chaos.brokerScript('start');
      double?.fail({ path: '/fastmon-files/', method: 'POST', status: 503 }); // monitor answering 503
      await sleep(2500);
      double?.clearFaults();
      chaos.agent?.kill('SIGKILL'); // the agent killed
      await sleep(300);
      chaos.startAgent(env);
      await sleep(2000);
      double?.hang({ path: '/fastmon-files/' }); // monitor hanging
      await sleep(2500);
      double?.clearFaults();
      await chaos.brokerScript('restart'); // broker restarted again
    })();

    await Promise.all([publishing, faults]);
    const end = Date.now() + 240_000;
    while ((double.fastmonFiles.length < 7 * STFS || observed.notified.size < 7 * STFS) && Date.now() < end)
      await sleep(500);

    const rows = double.fastmonFiles.map((r) => r.tf_filename);
    expect(rows.length, `rows; agent log tail:\n${chaos.agentLog.slice(-3000)}`).toBe(7 * STFS);
    expect(new Set(rows).size).toBe(7 * STFS);
    expect(new Set(double.fastmonFiles.map((r) => r.stf_file)).size).toBe(STFS);
    const missing = rows.filter((r) => !observed.notified.has(r));
    expect(missing, 'samples never notified').toEqual([]);
    console.log(
      `chaos: ${rows.length} rows, ${observed.notified.size} distinct samples notified in ${observed.count} notifications ` +
        `(${observed.count - observed.notified.size} repeats)`,
    );
  }, 420_000);
});
