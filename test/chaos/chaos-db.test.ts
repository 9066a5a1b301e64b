// Runs alone, after the main suite: kills the shared broker (FASTMON_TEST_BROKER's), restarts and locks
// the test PostgreSQL.

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { brokerAddress, brokerKind } from '../support/broker.js';
import { ChaosHarness } from '../support/chaos.js';
import { ROOT } from '../support/cli.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';
import { createTestDatabase, seedStfs, type TestDatabase } from '../support/postgres.js';

const PG_SCRIPT = path.join(ROOT, 'test/setup/postgres.sh');
const STFS = 2000;
const RUN = 109100;

const chaos = new ChaosHarness('chaosdb');
let double: MonitorDouble | null = null;
let db: TestDatabase | null = null;

afterAll(async () => {
  await chaos.close();
  await double?.close();
  // Leave the broker and the database up for whatever runs next.
  await chaos.brokerScript('start');
  execFileSync('bash', [PG_SCRIPT, 'start'], { stdio: 'ignore' });
  await db?.drop();
});

const name = (seq: number) => `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;

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

    const observed = await chaos.observe(out);

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
    chaos.startAgent(env);
    const deadline = Date.now() + 30_000;
    while (double.heartbeats.length === 0 && Date.now() < deadline) await sleep(100);
    await sleep(1500);

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
      execFileSync('bash', [PG_SCRIPT, 'restart'], { stdio: 'ignore' }); // the database restarted
      await sleep(1500);
      chaos.agent?.kill('SIGKILL'); // the agent killed
      await sleep(300);
      chaos.startAgent(env);
      await sleep(2000);
      await lockTable(url, 2500); // the database hanging: statements time out
      await chaos.brokerScript('restart'); // broker restarted again
    })();

    await Promise.all([publishing, faults]);
    const rowsSql = 'SELECT count(*)::int AS n FROM swf_fastmon_files';
    const end = Date.now() + 240_000;
    while (((await count(url, rowsSql)) < 7 * STFS || observed.notified.size < 7 * STFS) && Date.now() < end)
      await sleep(500);

    expect(await count(url, rowsSql), `rows; agent log tail:\n${chaos.agentLog.slice(-3000)}`).toBe(7 * STFS);
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
    const missing = rows.map((r) => r.tf_filename).filter((r) => !observed.notified.has(r));
    expect(missing, 'samples never notified').toEqual([]);
    // The database faults were felt (samples went to the outbox), and no log line shows the password.
    expect(chaos.agentLog).toMatch(/TF sample put in the outbox: swf-monitor database/);
    expect(chaos.agentLog).not.toContain(new URL(url).password);
    console.log(
      `chaos (database): ${7 * STFS} rows, ${observed.notified.size} distinct samples notified in ${observed.count} notifications ` +
        `(${observed.count - observed.notified.size} repeats)`,
    );
  }, 420_000);
});
