// Runs alone, after the main suite: kills the shared broker (FASTMON_TEST_BROKER's), restarts and locks
// the test PostgreSQL.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { StompConnection } from '../../src/messaging/stomp.js';
import { brokerAddress, brokerKind, brokerScript } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';
import { createTestDatabase, seedStfs, type TestDatabase } from '../support/postgres.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/src/cli.js');
const BROKER_SCRIPT = path.join(ROOT, brokerScript());
const PG_SCRIPT = path.join(ROOT, 'test/setup/postgres.sh');
const STFS = 2000;
const RUN = 109100;

let agent: ChildProcess | null = null;
let agentLog = '';
const connections: StompConnection[] = [];
let double: MonitorDouble | null = null;
let db: TestDatabase | null = null;

afterAll(async () => {
  agent?.kill('SIGKILL');
  for (const c of connections) await c.close();
  await double?.close();
  // Leave the broker and the database up for whatever runs next.
  execFileSync('bash', [BROKER_SCRIPT, 'start'], { stdio: 'ignore' });
  execFileSync('bash', [PG_SCRIPT, 'start'], { stdio: 'ignore' });
  await db?.drop();
});

const name = (seq: number) => `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;

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
    clientId: `fastmon-chaosdb-${label}-${randomUUID().slice(0, 6)}`,
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

/** The killed broker's JVM may still hold its port for a moment: the start is tried a few times. */
async function runBrokerScript(command: 'start' | 'restart'): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('bash', [BROKER_SCRIPT, command], { encoding: 'utf8', stdio: 'pipe' });
      return;
    } catch (err) {
      if (attempt >= 5) throw err;
      await sleep(1000);
    }
  }
}

/** Holds an exclusive lock on the sample table: every INSERT waits until the statement timeout. */
async function lockTable(url: string, ms: number): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('LOCK TABLE swf_fastmon_files IN ACCESS EXCLUSIVE MODE');
    await sleep(ms);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

async function count(url: string, sql: string): Promise<number> {
  const client = new pg.Client(url);
  try {
    await client.connect();
    return (await client.query(sql)).rows[0].n;
  } catch {
    return -1; // the database is restarting
  } finally {
    await client.end().catch(() => {});
  }
}

describe(`chaos with the PostgreSQL registrar (${brokerKind() === 'artemis' ? 'Artemis' : 'Classic'}): broker, database and agent failures during 2,000 stf_ready`, () => {
  it('ends with exactly 7 × 2,000 FastMonFile rows in PostgreSQL and every sample notified at least once', async () => {
    double = await startMonitorDouble();
    db = await createTestDatabase();
    await seedStfs(
      db.pool,
      RUN,
      Array.from({ length: STFS }, (_, i) => name(i + 1)),
    );
    await db.pool.end();
    const url = db.url;
    const topic = `/topic/fastmon.chaosdb.${randomUUID().slice(0, 8)}`;
    const out = `${topic}.out`;

    const notified = new Set<string>();
    let notifications = 0;
    const observer = connection('observer');
    observer.subscribe(
      {
        destination: out,
        ack: 'client-individual',
        // Artemis reads activemq.prefetchSize as a window in bytes: an unbounded window there.
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

    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-chaosdb-'));
    const { host, port } = brokerAddress();
    const env = {
      ACTIVEMQ_HOST: host,
      ACTIVEMQ_PORT: String(port),
      SWF_MONITOR_URL: double.url,
      SWF_API_TOKEN: double.token,
      SWF_MONITOR_DB_URL: url,
      FASTMON_MONITOR_DB_TIMEOUT_MS: '1000',
      SWF_LOG_LEVEL: 'warn',
      FASTMON_SUBSCRIPTION: topic,
      FASTMON_BROADCAST: out,
      FASTMON_CLIENT_ID: `fastmon-chaosdb-agent-${randomUUID().slice(0, 6)}`,
      FASTMON_DURABLE_SUBSCRIPTION: 'fastmon',
      FASTMON_OUTBOX: path.join(dir, 'outbox.jsonl'),
      FASTMON_BROKER_HEARTBEAT_MS: '2000',
      FASTMON_RECONNECT_MAX_MS: '1000',
      FASTMON_HTTP_PORT: '-1',
      FASTMON_HEARTBEAT_INTERVAL_S: '5',
    };
    agent = startAgent(env);
    const deadline = Date.now() + 30_000;
    while (double.heartbeats.length === 0 && Date.now() < deadline) await sleep(100);
    await sleep(1500);

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
        if (seq % 10 === 0) await sleep(20);
      }
    })();

    const faults = (async () => {
      await sleep(1500);
      process.kill(brokerPid(), 'SIGKILL'); // broker killed mid-stream
      await sleep(500);
      await runBrokerScript('start');
      execFileSync('bash', [PG_SCRIPT, 'restart'], { stdio: 'ignore' }); // the database restarted
      await sleep(1500);
      agent?.kill('SIGKILL'); // the agent killed
      await sleep(300);
      agent = startAgent(env);
      await sleep(2000);
      await lockTable(url, 2500); // the database hanging: statements time out
      await runBrokerScript('restart'); // broker restarted again
    })();

    await Promise.all([publishing, faults]);
    const rowsSql = 'SELECT count(*)::int AS n FROM swf_fastmon_files';
    const end = Date.now() + 240_000;
    while (((await count(url, rowsSql)) < 7 * STFS || notified.size < 7 * STFS) && Date.now() < end)
      await sleep(500);

    expect(await count(url, rowsSql), `rows; agent log tail:\n${agentLog.slice(-3000)}`).toBe(7 * STFS);
    expect(await count(url, 'SELECT count(DISTINCT tf_filename)::int AS n FROM swf_fastmon_files')).toBe(
      7 * STFS,
    );
    expect(await count(url, 'SELECT count(DISTINCT stf_file_id)::int AS n FROM swf_fastmon_files')).toBe(
      STFS,
    );
    expect(double.fastmonFiles).toHaveLength(0);
    const client = new pg.Client(url);
    await client.connect();
    const rows = (await client.query<{ tf_filename: string }>('SELECT tf_filename FROM swf_fastmon_files'))
      .rows;
    await client.end();
    const missing = rows.map((r) => r.tf_filename).filter((r) => !notified.has(r));
    expect(missing, 'samples never notified').toEqual([]);
    // The database faults were felt (samples went to the outbox), and no log line shows the password.
    expect(agentLog).toMatch(/TF sample put in the outbox: swf-monitor database/);
    expect(agentLog).not.toContain(new URL(url).password);
    console.log(
      `chaos (database): ${7 * STFS} rows, ${notified.size} distinct samples notified in ${notifications} notifications ` +
        `(${notifications - notified.size} repeats)`,
    );
  }, 420_000);
});
