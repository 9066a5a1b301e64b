// The PostgreSQL registrar: rows/s beside a raw batched INSERT of the same rows (the ceiling), and the
// agent end to end through ActiveMQ into PostgreSQL beside the REST path and the raw consumer.

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { KEYS } from '../src/config/keys.js';
import { stfFilename } from '../src/gen/plan.js';
import { silentLogger } from '../src/log/logger.js';
import { sampleRecord } from '../src/scheduler/scheduler.js';
import { DbRegistrar } from '../src/sinks/db-registrar.js';
import { Outbox } from '../src/sinks/outbox.js';
import { OutboxDrainer } from '../src/sinks/outbox-drainer.js';
import type { SampleRecord } from '../src/sinks/registrar.js';
import { Store } from '../src/store/store.js';
import { MONITOR_DDL } from '../test/support/monitor-schema.js';
import { adminQuery, dropDatabase } from '../test/support/pg-admin.js';
import { sampleStf } from '../workers/sampler.js';
import { withAgent } from './broker.js';
import { percentile, quick, type Row, root, scratch } from './common.js';
import { cpuShares, DoubleThread, flood, Listener, paced, type Setup } from './load.js';
import { cpuSeconds } from './procfs.js';
import { requireBroker, StompPeer } from './stomp-peer.js';

const SETTINGS = { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 };
const RAW_BATCH = 700;
const keyDefault = (key: string) => Number(KEYS.find((spec) => spec.key === key)?.default);

/** The test cluster's URL (test/setup/postgres.sh), or FASTMON_BENCH_PG_URL. */
function baseUrl(): string {
  return (
    process.env.FASTMON_BENCH_PG_URL ||
    execFileSync('bash', [`${root}/test/setup/postgres.sh`, 'url'], { encoding: 'utf8' }).trim()
  );
}

/** A fresh database with swf-monitor's tables, for this bench run only. */
async function benchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = baseUrl();
  const name = `fastmon_bench_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  await adminQuery(base, `CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  await adminQuery(url.toString(), MONITOR_DDL);
  return { url: url.toString(), drop: () => dropDatabase(base, name) };
}

async function seedRun(pool: pg.Pool, run: number, names: string[]): Promise<void> {
  await pool.query(
    'INSERT INTO swf_runs (run_number, start_time) VALUES ($1, now()) ON CONFLICT (run_number) DO NOTHING',
    [run],
  );
  await pool.query(
    `INSERT INTO swf_stf_files (file_id, machine_state, stf_filename, created_at, status, run_id)
     SELECT gen_random_uuid(), 'physics', n, now(), 'registered', r.run_id
       FROM unnest($1::text[]) AS n, swf_runs r WHERE r.run_number = $2
     ON CONFLICT (stf_filename) DO NOTHING`,
    [names, run],
  );
}

/** The samples the agent registers for `stfs` announced STFs of `run`, as the scheduler builds them. */
function records(run: number, stfs: number): SampleRecord[] {
  const out: SampleRecord[] = [];
  for (let i = 1; i <= stfs; i++) {
    const name = stfFilename(run, i);
    for (const sample of sampleStf({
      seed: 'bench',
      runId: String(run),
      stfFilename: name,
      tfCount: 1000,
      stfSizeBytes: 2_000_000_000,
      settings: SETTINGS,
    })) {
      out.push(
        sampleRecord(
          { filename: name, runId: String(run), executionId: 'stf_datataking-bench-0001' },
          {
            tfCount: 1000,
            tfCountSource: 'message',
            sizeBytes: 2_000_000_000,
            stfChecksum: null,
            header: null,
          },
          { ...sample, checksum: null, file: null },
          'fastmon-agent-bench-1',
        ),
      );
    }
  }
  return out;
}

/**
 * The ceiling: the same rows as plain multi-row INSERTs, 700 per statement, one after the other on
 * one connection, with the parents' keys looked up beforehand (not timed). No RETURNING, no reading.
 */
async function rawInsert(pool: pg.Pool, rows: SampleRecord[]): Promise<number> {
  const { rows: parents } = await pool.query<{ stf_filename: string; file_id: string }>(
    'SELECT stf_filename, file_id FROM swf_stf_files WHERE stf_filename = ANY($1::text[])',
    [[...new Set(rows.map((r) => r.stfFilename))]],
  );
  const parent = new Map(parents.map((p) => [p.stf_filename, p.file_id]));
  const client = await pool.connect();
  try {
    const started = performance.now();
    for (let at = 0; at < rows.length; at += RAW_BATCH) {
      const b = rows.slice(at, at + RAW_BATCH);
      await client.query(
        `INSERT INTO swf_fastmon_files (tf_file_id, tf_filename, file_size_bytes, checksum, status, metadata,
                                        created_at, updated_at, tf_count, tf_first, tf_last, stf_file_id)
         SELECT gen_random_uuid(), tf, size, ck, 'registered', md, now(), now(), n, f, l, stf
           FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[], $5::int[], $6::int[], $7::int[], $8::uuid[])
                AS t(tf, size, ck, md, n, f, l, stf)
         ON CONFLICT (tf_filename) DO NOTHING`,
        [
          b.map((r) => r.tfFilename),
          b.map((r) => r.fileSizeBytes),
          b.map((r) => r.checksum),
          b.map((r) => JSON.stringify(r.metadata)),
          b.map((r) => r.tfCount),
          b.map((r) => r.tfFirst),
          b.map((r) => r.tfLast),
          b.map((r) => parent.get(r.stfFilename)),
        ],
      );
    }
    return rows.length / ((performance.now() - started) / 1000);
  } finally {
    client.release();
  }
}

/** The registrar with its defaults, every sample of every STF submitted at once (all in flight). */
async function throughRegistrar(
  url: string,
  rows: SampleRecord[],
): Promise<{ rate: number; batches: number }> {
  const registrar = await DbRegistrar.open({
    url,
    batchRows: keyDefault('monitor_db.batch_rows'),
    flushMs: keyDefault('monitor_db.flush_ms'),
    connections: keyDefault('monitor_db.connections'),
    timeoutMs: keyDefault('monitor_db.timeout_ms'),
    logger: silentLogger(),
  });
  try {
    const started = performance.now();
    await Promise.all(rows.map((r) => registrar.register(r)));
    return { rate: rows.length / ((performance.now() - started) / 1000), batches: registrar.batches.batches };
  } finally {
    await registrar.close();
  }
}

/** CPU seconds of every PostgreSQL server process now (postmaster, backends, writers), by pid. */
function postgresCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres')
        out.set(Number(entry), cpuSeconds(Number(entry)));
    } catch {}
  }
  return out;
}

/** CPU seconds the server used between two readings (processes that ended meanwhile are not counted). */
function postgresCpuSince(before: Map<number, number>): number {
  let total = 0;
  for (const [pid, now] of postgresCpu()) total += now - (before.get(pid) ?? 0);
  return total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function rowsScenario(url: string): Promise<Row[]> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const stfs = quick ? 1000 : 4000;
  const rounds = quick ? 1 : 3;
  let run = 800001;
  const raw: number[] = [];
  const registrar: number[] = [];
  let batches = 0;
  try {
    // Alternating rounds on fresh STFs, so both write into a table of about the same size.
    for (let round = 0; round < rounds; round++) {
      for (const which of ['raw', 'registrar'] as const) {
        const names = Array.from({ length: stfs }, (_, i) => stfFilename(run, i + 1));
        await seedRun(pool, run, names);
        const rows = records(run, stfs);
        run++;
        if (which === 'raw') raw.push(await rawInsert(pool, rows));
        else {
          const r = await throughRegistrar(url, rows);
          registrar.push(r.rate);
          batches = r.batches;
        }
      }
    }
  } finally {
    await pool.end();
  }
  const rows = stfs * SAMPLES_PER_STF;
  return [
    {
      name: `postgres: raw batched INSERT, ${RAW_BATCH} rows/statement (${rows} rows, median of ${rounds})`,
      value: median(raw),
      unit: 'rows/s',
      baseline: '-',
      ratio: 1,
    },
    {
      name: `postgres: DbRegistrar, defaults (${rows} rows in ${batches} statements)`,
      value: median(registrar),
      unit: 'rows/s',
      baseline: 'raw INSERT',
      ratio: median(registrar) / median(raw),
    },
  ];
}

const SAMPLES_PER_STF = SETTINGS.tfFilesPerStf;

/**
 * After an outage: the outbox's entries replayed into PostgreSQL one at a time (how the drainer
 * worked before, and still does through REST) and in batches of batch_rows through the registrar's
 * group commit, as the agent does with the database registrar. Entries per second, announcing nothing.
 */
async function outboxScenario(url: string): Promise<Row[]> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const stfs = quick ? 150 : 300;
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-bench-outbox-'));
  const rates: Record<string, { rate: number; statements: number }> = {};
  try {
    let run = 820001;
    for (const batchSize of [1, keyDefault('monitor_db.batch_rows')]) {
      const names = Array.from({ length: stfs }, (_, i) => stfFilename(run, i + 1));
      await seedRun(pool, run, names);
      const rows = records(run++, stfs);
      const store = await Store.acquire({ file: path.join(dir, `outbox-${batchSize}.sqlite`) });
      const outbox = await Outbox.open(store, { maxBytes: 2 ** 30, owned: true });
      await Promise.all(rows.map((r) => outbox.append(r)));
      const registrar = await DbRegistrar.open({
        url,
        batchRows: keyDefault('monitor_db.batch_rows'),
        flushMs: keyDefault('monitor_db.flush_ms'),
        connections: keyDefault('monitor_db.connections'),
        timeoutMs: keyDefault('monitor_db.timeout_ms'),
        logger: silentLogger(),
      });
      const drainer = new OutboxDrainer(
        outbox,
        { prepare: (payload) => registrar.register(payload as SampleRecord), finish: async () => {} },
        { batchSize },
      );
      const started = performance.now();
      drainer.start();
      while (outbox.depth > 0) await new Promise((r) => setTimeout(r, 10));
      rates[batchSize] = {
        rate: rows.length / ((performance.now() - started) / 1000),
        statements: registrar.batches.batches,
      };
      await drainer.close();
      await outbox.close();
      await registrar.close();
    }
  } finally {
    await pool.end();
    rmSync(dir, { recursive: true, force: true });
  }
  const [one, batched] = Object.values(rates) as [(typeof rates)[string], (typeof rates)[string]];
  const entries = stfs * SAMPLES_PER_STF;
  return [
    {
      name: `postgres: outbox drain, one entry at a time (${entries} entries, ${one.statements} statements)`,
      value: one.rate,
      unit: 'entries/s',
      baseline: '-',
      ratio: 1,
    },
    {
      name: `postgres: outbox drain, in batches (${entries} entries, ${batched.statements} statements)`,
      value: batched.rate,
      unit: 'entries/s',
      baseline: 'one at a time',
      ratio: batched.rate / one.rate,
    },
  ];
}

/** The agent end to end through ActiveMQ: REST to the double against PostgreSQL, and the p99 at 200/s. */
async function endToEnd(url: string): Promise<Row[]> {
  await requireBroker();
  const id = randomUUID().slice(0, 8);
  const double = await DoubleThread.start();
  const producer = await StompPeer.connect();
  const listening = await StompPeer.connect();
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const setup: Setup = {
    double,
    producer,
    listener: undefined as unknown as Listener,
    dir: scratch('postgres'),
    input: `/topic/fastmon.bench.pg.in.${id}`,
    output: `/topic/fastmon.bench.pg.out.${id}`,
    nextRun: 710001,
    seed: (run, names) => seedRun(pool, run, names),
  };
  setup.listener = new Listener(listening, setup.output);
  const floodCount = quick ? 800 : 10_000;
  const rate = 200;
  const seconds = Number(process.env.FASTMON_BENCH_PACE_SECONDS) || (quick ? 2 : 15);
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const rows: Row[] = [];
  const parts = pgParts();
  const defaults = { raw: false as const, workers: 0, inline: false };
  const dbKind = { ...defaults, env: { SWF_MONITOR_DB_URL: url } };
  try {
    if (parts.includes('latency')) {
      // Back to back, each in a fresh consumer: the raw consumer (to the double), then the agent.
      const pace = async (label: string, kind: Parameters<typeof withAgent>[1]) =>
        withAgent(setup, kind, label, async (a) =>
          sorted((await paced(setup, rate, seconds, `${label} at ${rate}/s`, a.child.pid)).latencies),
        );
      const raw = await pace('raw (postgres scenario)', { raw: true });
      const agent = await pace('agent → PostgreSQL (latency)', dbKind);
      for (const p of [50, 99]) {
        rows.push(
          {
            name: `postgres e2e: latency at ${rate} STFs/s, p${p}, raw consumer (→ double)`,
            value: percentile(raw, p),
            unit: 'ms',
            baseline: '-',
            ratio: 1,
          },
          {
            name: `postgres e2e: latency at ${rate} STFs/s, p${p}, agent → PostgreSQL`,
            value: percentile(agent, p),
            unit: 'ms',
            baseline: `raw p${p}`,
            ratio: percentile(agent, p) / percentile(raw, p),
          },
        );
      }
    }
    if (parts.includes('throughput')) {
      const rest = await withAgent(setup, defaults, 'agent → REST (double)', (a) =>
        flood(setup, floodCount, a.label, a),
      );
      await withAgent(setup, dbKind, 'agent → PostgreSQL', async (a) => {
        const pgBefore = postgresCpu();
        const direct = await flood(setup, floodCount, a.label, a);
        const pgMsPerStf = (postgresCpuSince(pgBefore) * 1000) / floodCount;
        const cpu = (label: string) => cpuShares[label]?.agent ?? Number.NaN;
        rows.push(
          {
            name: `postgres e2e: throughput, agent → REST (double), ${floodCount} STFs`,
            value: rest,
            unit: 'STFs/s',
            baseline: '-',
            ratio: 1,
          },
          {
            name: `postgres e2e: throughput, agent → PostgreSQL, ${floodCount} STFs`,
            value: direct,
            unit: 'STFs/s',
            baseline: 'REST (double)',
            ratio: direct / rest,
          },
          {
            name: '  CPU per STF in the agent, → PostgreSQL',
            value: cpu(a.label),
            unit: 'ms',
            baseline: '→ REST (double)',
            ratio: cpu(a.label) / cpu('agent → REST (double)'),
          },
          {
            name: '  CPU per STF in the PostgreSQL server meanwhile',
            value: pgMsPerStf,
            unit: 'ms',
            baseline: 'agent → PostgreSQL',
            ratio: pgMsPerStf / cpu(a.label),
          },
        );
      });
    }
  } finally {
    await producer.close();
    await listening.close();
    await double.close();
    await pool.end();
  }
  rmSync(setup.dir, { recursive: true, force: true });
  return rows;
}

/** FASTMON_BENCH_PG_PARTS: some of rows, outbox, latency, throughput (for profiling one); all by default. */
function pgParts(): string[] {
  return (
    process.env.FASTMON_BENCH_PG_PARTS?.split(',').map((p) => p.trim()) ?? [
      'rows',
      'outbox',
      'latency',
      'throughput',
    ]
  );
}

export async function postgres(): Promise<Row[]> {
  const db = await benchDatabase();
  try {
    const parts = pgParts();
    return [
      ...(parts.includes('rows') ? await rowsScenario(db.url) : []),
      ...(parts.includes('outbox') ? await outboxScenario(db.url) : []),
      ...(parts.some((p) => p === 'latency' || p === 'throughput') ? await endToEnd(db.url) : []),
    ];
  } finally {
    await db.drop();
  }
}
