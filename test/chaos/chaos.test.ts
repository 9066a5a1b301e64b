// Runs alone (vitest.chaos.config.ts, after the main suite): it kills and restarts the shared broker
// (the one FASTMON_TEST_BROKER selects, through its own setup script).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { StompConnection } from '../../src/messaging/stomp.js';
import { brokerAddress, brokerKind, brokerScript } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/src/cli.js');
const BROKER_SCRIPT = path.join(ROOT, brokerScript());
const STFS = 2000;
const RUN = 109000;

let agent: ChildProcess | null = null;
let agentLog = '';
const connections: StompConnection[] = [];
let double: MonitorDouble | null = null;

afterAll(async () => {
  agent?.kill('SIGKILL');
  for (const c of connections) await c.close();
  await double?.close();
  // Leave the broker up for whatever runs next.
  execFileSync('bash', [BROKER_SCRIPT, 'start'], { stdio: 'ignore' });
});

function name(seq: number): string {
  return `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
}

/** A client that survives the broker restarts: our reconnecting connection, durable where asked. */
function connection(label: string): StompConnection {
  const { host, port } = brokerAddress();
  const c = new StompConnection({
    host,
    port,
    user: 'admin',
    password: 'admin',
    useSsl: false,
    caFile: '',
    heartbeatMs: 2000,
    clientId: `fastmon-chaos-${label}-${randomUUID().slice(0, 6)}`,
    reconnectInitialMs: 100,
    reconnectMaxMs: 1000,
    connectTimeoutMs: 1000,
    publishTimeoutMs: 5000,
    logger: captureLogs('warn').logger,
  });
  connections.push(c);
  return c;
}

function brokerPid(): number {
  const out = execFileSync('bash', [BROKER_SCRIPT, 'status'], { encoding: 'utf8' });
  const match = /pid\(s\): (\d+)/.exec(out);
  if (!match) throw new Error(`no broker pid in: ${out}`);
  return Number(match[1]);
}

function startAgent(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [CLI, 'agent'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  child.stderr?.on('data', (d) => {
    agentLog += d;
  });
  child.stdout?.on('data', () => {});
  return child;
}

describe(`chaos (${brokerKind() === 'artemis' ? 'Artemis' : 'Classic'}): broker, monitor and agent failures during a stream of 2,000 stf_ready`, () => {
  it('ends with exactly 7 × 2,000 FastMonFile rows and every sample notified at least once', async () => {
    double = await startMonitorDouble();
    for (let seq = 1; seq <= STFS; seq++) double.addStfFile({ stf_filename: name(seq), run_number: RUN });
    const topic = `/topic/fastmon.chaos.${randomUUID().slice(0, 8)}`;
    const out = `${topic}.out`;

    // The observer: a durable subscriber of the notifications, so none is lost while it reconnects.
    const notified = new Set<string>();
    let notifications = 0;
    const observer = connection('observer');
    observer.subscribe(
      {
        destination: out,
        ack: 'client-individual',
        // Artemis reads activemq.prefetchSize as a window in bytes (one message at a time): the
        // observer asks it for an unbounded window instead, so that it keeps up with the stream.
        headers: {
          'activemq.subscriptionName': 'observer',
          ...(brokerKind() === 'artemis'
            ? { 'consumer-window-size': '-1' }
            : { 'activemq.prefetchSize': '1000' }),
        },
      },
      (m) => {
        const body = JSON.parse(m.body) as { tf_filename?: string };
        if (body.tf_filename) notified.add(body.tf_filename);
        notifications++;
        m.ack();
      },
    );
    observer.start();
    await observer.waitConnected(10_000);

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
    agent = startAgent(env);
    const deadline = Date.now() + 30_000;
    while (!agentLog.includes('subscribed') && double.heartbeats.length === 0 && Date.now() < deadline)
      await sleep(100);
    await sleep(1500);

    // The producer: persistent messages (as daqsim sends them), republished when a receipt is lost.
    const producer = connection('producer');
    producer.start();
    await producer.waitConnected(10_000);
    const publishing = (async () => {
      for (let seq = 1; seq <= STFS; seq++) {
        const body = JSON.stringify({
          msg_type: 'stf_ready',
          run_id: String(RUN),
          filename: name(seq),
          state: 'run',
          substate: 'physics',
        });
        for (;;) {
          try {
            await producer.publish(topic, body, { persistent: 'true' });
            break;
          } catch {
            await sleep(200);
          }
        }
        if (seq % 10 === 0) await sleep(20); // ~400 STFs/s at most: the stream lasts through the faults
      }
    })();

    const faults = (async () => {
      await sleep(1500);
      process.kill(brokerPid(), 'SIGKILL'); // broker killed mid-stream
      await sleep(500);
      execFileSync('bash', [BROKER_SCRIPT, 'start'], { stdio: 'ignore' });
      double?.fail({ path: '/fastmon-files/', method: 'POST', status: 503 }); // monitor answering 503
      await sleep(2500);
      double?.clearFaults();
      agent?.kill('SIGKILL'); // the agent killed
      await sleep(300);
      agent = startAgent(env);
      await sleep(2000);
      double?.hang({ path: '/fastmon-files/' }); // monitor hanging
      await sleep(2500);
      double?.clearFaults();
      execFileSync('bash', [BROKER_SCRIPT, 'restart'], { stdio: 'ignore' }); // broker restarted again
    })();

    await Promise.all([publishing, faults]);
    const end = Date.now() + 240_000;
    while ((double.fastmonFiles.length < 7 * STFS || notified.size < 7 * STFS) && Date.now() < end)
      await sleep(500);

    const rows = double.fastmonFiles.map((r) => r.tf_filename);
    expect(rows.length, `rows; agent log tail:\n${agentLog.slice(-3000)}`).toBe(7 * STFS);
    expect(new Set(rows).size).toBe(7 * STFS);
    expect(new Set(double.fastmonFiles.map((r) => r.stf_file)).size).toBe(STFS);
    const missing = rows.filter((r) => !notified.has(r));
    expect(missing, 'samples never notified').toEqual([]);
    console.log(
      `chaos: ${rows.length} rows, ${notified.size} distinct samples notified in ${notifications} notifications ` +
        `(${notifications - notified.size} repeats)`,
    );
  }, 420_000);
});
