// The agent with SWF_MONITOR_DB_URL: ActiveMQ in, real PostgreSQL for rows, the double for the rest.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { writeStf } from '../../workers/stf-writer.js';
import { agentTestBed, type TestAgent } from '../support/agent.js';
import type { Collector } from '../support/broker.js';
import { startCli } from '../support/cli.js';
import { MONITOR_DDL } from '../support/monitor-schema.js';
import { createTestDatabase, fastmonRows, seedStfs, type TestDatabase } from '../support/postgres.js';
import { rememberSecret } from '../support/secrets.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const RUN = '101993';
let db: TestDatabase;
let proxy: TcpProxy;
const dirs: string[] = [];

const bed = agentTestBed({
  label: 'dbagent',
  run: RUN,
  stfs: 9,
  namespaced: true,
  env: { FASTMON_SEED: 'test-seed' },
});
const { stfName } = bed;

beforeAll(async () => {
  db = await createTestDatabase();
  const u = new URL(db.url);
  proxy = await startTcpProxy(u.hostname, Number(u.port));
});
afterAll(async () => {
  await proxy.close();
  await db.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
beforeEach(async () => {
  await db.pool.query('TRUNCATE swf_fastmon_files, swf_stf_files, swf_runs CASCADE');
  const names = Array.from({ length: 60 }, (_, i) => stfName(i + 1));
  await seedStfs(db.pool, Number(RUN), names);
  proxy.restore();
});

function stfReady(seq: number) {
  return {
    msg_type: 'stf_ready',
    namespace: bed.namespace,
    filename: stfName(seq),
    run_id: RUN,
    state: 'run',
    substate: 'physics',
  };
}

/** The database URL through the proxy the tests can cut. */
function proxiedUrl(): string {
  const u = new URL(db.url);
  u.port = String(proxy.port);
  return u.toString();
}

/** `withDb`: rows go to the test database, through the proxy. */
function agent(env: Record<string, string> = {}, withDb = true): Promise<TestAgent> {
  const database = { SWF_MONITOR_DB_URL: proxiedUrl(), FASTMON_MONITOR_DB_TIMEOUT_MS: '1500' };
  return bed.agent({ ...(withDb ? database : {}), ...env });
}

const registered = (c: Collector) => c.bodies('tf_file_registered');

async function waitUntil(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the agent with SWF_MONITOR_DB_URL', () => {
  it('registers a flood of stf_ready in PostgreSQL in batches; REST keeps only identity, subscriber and heartbeats', async () => {
    const a = await agent();
    for (let seq = 1; seq <= 60; seq++) await bed.peer.publish(bed.topic, stfReady(seq));
    await bed.seen.waitFor((c) => registered(c).length === 420, 30_000, '420 notifications');
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(420);
    const ids = new Map(rows.map((r) => [r.tf_filename, r.tf_file_id]));
    for (const n of registered(bed.seen)) expect(n.tf_file_id).toBe(ids.get(String(n.tf_filename)));
    expect(bed.double.fastmonFiles).toHaveLength(0);
    expect(bed.double.requests.filter((r) => r.path.includes('fastmon-files'))).toHaveLength(0);
    // No tf_count in the messages: each STF's count was looked up, in the database, not through REST.
    const lookups = (await a.agent.metrics.tfCountLookups.get()).values.reduce((n, v) => n + v.value, 0);
    expect(lookups).toBe(60);
    expect(bed.double.requests.filter((r) => r.path.includes('stf-files'))).toHaveLength(0);
    expect(bed.double.requests.some((r) => r.path.includes('next-agent-id'))).toBe(true);
    expect(bed.double.subscribers.length).toBeGreaterThan(0);
    expect(bed.double.heartbeats.length).toBeGreaterThan(0);
    const statements = (await a.agent.metrics.monitorRequests.get()).values.find(
      (v) => v.metricName?.endsWith('_count') && v.labels.endpoint === 'swf_fastmon_files',
    );
    expect(statements?.value).toBeGreaterThan(0);
    expect(statements?.value).toBeLessThan(420 / 2); // shared statements, not one per row
    expect(a.logs.text()).not.toContain(new URL(db.url).password);
  });

  it('writes the same rows as the REST path for the same STFs', async () => {
    const rest = await agent({}, false);
    for (const seq of [1, 2, 3]) await bed.peer.publish(bed.topic, stfReady(seq));
    await bed.seen.waitFor((c) => registered(c).length === 21, 15_000, 'REST registrations');
    await rest.stop();
    bed.running = [];
    const direct = await agent();
    for (const seq of [1, 2, 3]) await bed.peer.publish(bed.topic, stfReady(seq));
    await bed.seen.waitFor((c) => registered(c).length === 42, 15_000, 'database registrations');
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(21);
    for (const row of rows) {
      const api = bed.double.fastmonFiles.find((f) => f.tf_filename === row.tf_filename);
      if (!api) throw new Error(`${row.tf_filename} missing in the double`);
      for (const f of [
        'stf_file',
        'file_size_bytes',
        'checksum',
        'status',
        'tf_count',
        'tf_first',
        'tf_last',
      ] as const)
        expect(row[f], f).toEqual(api[f]);
      // Each agent signs its rows with its own name; everything else in the metadata is the same.
      const { processed_by: ours, ...dbMeta } = row.metadata as Record<string, unknown>;
      const { processed_by: theirs, ...apiMeta } = api.metadata as Record<string, unknown>;
      expect(dbMeta).toEqual(apiMeta);
      expect(ours).toBe(direct.agent.agentName);
      expect(theirs).toBe(rest.agent.agentName);
    }
  });

  it('registers nothing twice on redelivery or after a restart, and re-announces the existing ids', async () => {
    const first = await agent();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, '7 notifications');
    await first.stop();
    bed.running = [];
    await agent();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length >= 14, 15_000, 'notifications after the restart');
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(7);
    const ids = rows.map((r) => r.tf_file_id).sort();
    expect(
      registered(bed.seen)
        .slice(7, 14)
        .map((n) => String(n.tf_file_id))
        .sort(),
    ).toEqual(ids);
  });

  it('logs the refusal of an unknown STF as for a 400, and carries on', async () => {
    const a = await agent();
    await bed.peer.publish(bed.topic, { ...stfReady(1), filename: 'swf.101993.000404.stf' });
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'the next STF');
    await waitUntil(() => a.logs.find((r) => r.code === 'MONITOR_REJECTED') !== undefined, 'the refusal');
    expect(String(a.logs.find((r) => r.code === 'MONITOR_REJECTED')?.msg)).toMatch(
      /TF sample not registered: .*Object with stf_filename=swf.101993.000404.stf does not exist/,
    );
    expect(await fastmonRows(db.pool)).toHaveLength(7);
    // As for swf-monitor's 400: retried a few times (the STF may be registered meanwhile), then acknowledged.
    const refusals = () => a.logs.records().filter((r) => r.code === 'MONITOR_REJECTED').length;
    await waitUntil(() => refusals() === 5 * 7, 'five attempts of seven samples', 20_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(refusals()).toBe(5 * 7);
    expect(a.logs.records().filter((r) => r.msg === 'message not fully handled; retrying')).toHaveLength(4);
  });

  it('keeps the samples in the outbox while the database is down and drains it in shared statements when it is back', async () => {
    const a = await agent();
    await bed.peer.publish(bed.topic, stfReady(1));
    await bed.seen.waitFor((c) => registered(c).length === 7, 15_000, 'before the outage');
    proxy.cut();
    // With its tf_count in the message, no StfFile lookup is needed (one that fails retries the
    // whole stf_ready instead, as with swf-monitor unreachable): the samples meet the outage.
    for (const seq of [2, 3, 4]) await bed.peer.publish(bed.topic, { ...stfReady(seq), tf_count: 500 });
    await waitUntil(
      () =>
        a.logs.records().filter((r) => String(r.msg).startsWith('TF sample put in the outbox')).length === 21,
      '21 samples in the outbox',
    );
    expect((await a.agent.metrics.outboxDepth.get()).values[0]?.value).toBe(21);
    const written = async () =>
      (await a.agent.metrics.monitorRequests.get()).values.find(
        (v) =>
          v.metricName?.endsWith('_count') &&
          v.labels.endpoint === 'swf_fastmon_files' &&
          v.labels.status === 'ok',
      )?.value ?? 0;
    const statementsBefore = await written();
    proxy.restore();
    await bed.peer.publish(bed.topic, stfReady(5));
    await bed.seen.waitFor((c) => registered(c).length === 35, 40_000, 'the outbox drained and the next STF');
    expect(a.logs.find((r) => String(r.msg).startsWith('StfFile lookup'))).toBeUndefined();
    await waitUntil(
      async () => (await a.agent.metrics.outboxDepth.get()).values[0]?.value === 0,
      'empty outbox',
    );
    // The 21 entries went back in one statement (the next STF's 7 in one more at most), not 21.
    expect((await written()) - statementsBefore).toBeLessThanOrEqual(3);
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(35);
    const ids = new Map(rows.map((r) => [r.tf_filename, r.tf_file_id]));
    for (const n of registered(bed.seen)) expect(n.tf_file_id).toBe(ids.get(String(n.tf_filename)));
    expect(a.logs.text()).not.toContain(new URL(db.url).password);
  });
});

describe('swf-fastmon with SWF_MONITOR_DB_URL', () => {
  it('refuses to start, in one line naming the table and column, when the tables differ', async () => {
    const other = await createTestDatabase(MONITOR_DDL.replace('tf_last integer NULL', 'tf_last text NULL'));
    try {
      const password = decodeURIComponent(new URL(other.url).password);
      rememberSecret(password);
      const started = startCli(['agent'], {
        ACTIVEMQ_HOST: '127.0.0.1',
        SWF_MONITOR_URL: bed.double.url,
        SWF_API_TOKEN: bed.double.token,
        SWF_MONITOR_DB_URL: other.url,
        FASTMON_HTTP_PORT: '-1',
        SWF_LOG_LEVEL: 'warn',
      });
      const code = await started.exited;
      expect(code).toBe(1);
      const lines = started.out.stderr.trim().split('\n');
      expect(lines.at(-1)).toMatch(
        /^swf-fastmon: MONITOR_DB_SCHEMA: .*table swf_fastmon_files, column tf_last: is text, fastmon writes integer/,
      );
      expect(started.out.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(started.out.stderr + started.out.stdout).not.toContain(password);
    } finally {
      await other.drop();
    }
  });

  it('scans STFs on disk into Run, StfFile and FastMonFile rows like the REST path', async () => {
    await db.pool.query('TRUNCATE swf_fastmon_files, swf_stf_files, swf_runs CASCADE');
    const make = async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-dbscan-'));
      dirs.push(dir);
      mkdirSync(path.join(dir, 'data'));
      for (const seq of [1, 2]) {
        await writeStf(
          path.join(dir, 'data', `swf.102002.${String(seq).padStart(6, '0')}.stf`),
          {
            runNumber: 102002n,
            stfSequence: BigInt(seq),
            state: 'run',
            substate: 'physics',
            startNs: 0n,
            endNs: 0n,
            tfLengths: Array.from({ length: 40 }, () => 64),
          },
          (tf, offset, into) => {
            into.fill((tf + offset + seq) & 0xff);
          },
        );
      }
      return dir;
    };
    const common = {
      SWF_MONITOR_URL: bed.double.url,
      SWF_API_TOKEN: bed.double.token,
      FASTMON_HTTP_PORT: '-1',
    };
    const restDir = await make();
    const rest = startCli(
      ['scan', path.join(restDir, 'data')],
      { ...common, SWF_LOG_LEVEL: 'warn' },
      restDir,
    );
    expect(await rest.exited, rest.out.stderr).toBe(0);
    const dbDir = await make();
    const direct = startCli(
      ['scan', '--monitor-db', db.url, path.join(dbDir, 'data')],
      { ...common, SWF_LOG_LEVEL: 'warn' },
      dbDir,
    );
    expect(await direct.exited, direct.out.stderr).toBe(0);
    expect(direct.out.stderr + direct.out.stdout).not.toContain(new URL(db.url).password);

    const stfs = await db.pool.query(
      `SELECT s.*, s.file_size_bytes::float8 AS file_size_bytes, r.run_number FROM swf_stf_files s JOIN swf_runs r USING (run_id)`,
    );
    expect(stfs.rows).toHaveLength(2);
    for (const row of stfs.rows) {
      const api = bed.double.stfFiles.find((f) => f.stf_filename === row.stf_filename);
      if (!api) throw new Error(`${row.stf_filename} missing in the double`);
      for (const f of [
        'machine_state',
        'file_size_bytes',
        'checksum',
        'status',
        'tf_count',
        'daq_state',
      ] as const)
        expect(row[f], f).toEqual(api[f]);
      const { created_by: a1, path: p1, ...dbMeta } = row.metadata;
      const { created_by: a2, path: p2, ...apiMeta } = api.metadata as Record<string, unknown>;
      expect(dbMeta).toEqual(apiMeta);
      expect(path.basename(String(p1))).toBe(path.basename(String(p2)));
      expect(row.run_number).toBe(bed.double.runs.find((r) => r.run_id === api.run)?.run_number);
    }
    const rows = await fastmonRows(db.pool);
    expect(rows).toHaveLength(14);
    for (const row of rows) {
      const api = bed.double.fastmonFiles.find((f) => f.tf_filename === row.tf_filename);
      if (!api) throw new Error(`${row.tf_filename} missing in the double`);
      for (const f of [
        'stf_file',
        'file_size_bytes',
        'checksum',
        'status',
        'tf_count',
        'tf_first',
        'tf_last',
      ] as const)
        expect(row[f], f).toEqual(api[f]);
    }
  });
});
