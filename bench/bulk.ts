// What a bulk endpoint would gain: FastMonFile rows/s into the swf-monitor double, one POST per row (the
// agent today) against the PROPOSED POST /api/fastmon-files/bulk/ (docs/bulk-posting.md).
//
// The poster and the double share this process and its one thread, so every figure is what both ends
// sustain together: HTTP and JSON on each side, not Django's or PostgreSQL's cost per request.

import { Pool } from 'undici';
import { KEYS } from '../src/config/keys.js';
import { stfFilename } from '../src/gen/plan.js';
import { fastMonFileRow, type NewFastMonFile } from '../src/monitor/rows.js';
import { sampleRecord } from '../src/scheduler/scheduler.js';
import { type BulkResult, type MonitorDouble, startMonitorDouble } from '../test/support/monitor-double.js';
import { sampleStf } from '../workers/sampler.js';
import { quick, type Row } from './common.js';

const RUN = 101993;
const TF_COUNT = 1000;
const STF_BYTES = 2_000_000_000;
const SETTINGS = { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 };
/** The agent's default pool size (`monitor.connections`). */
const CONNECTIONS = Number(KEYS.find((spec) => spec.key === 'monitor.connections')?.default);
/** STFs of the uncounted last warm-up run of POST per row. */
const WARM_UP_STFS = quick ? 300 : 600;
/** Batches each connection carries per round, at least (the largest batch sets the round's size). */
const WAVES = quick ? 2 : 4;
/** Request records the double may hold before the poster clears them. */
const KEEP_REQUESTS = 1000;

interface Variant {
  label: string;
  /** Rows per bulk request; 0: one POST /api/fastmon-files/ per row. */
  batch: number;
  /** Requests in flight per connection. */
  pipelining: number;
}

const PREFIX = 'rows to double (same thread):';
const VARIANTS: readonly Variant[] = [
  { label: 'POST per row, pipelining 1', batch: 0, pipelining: 1 },
  { label: 'POST per row, pipelining 8', batch: 0, pipelining: 8 },
  { label: 'bulk POST, 7 rows (1 STF)', batch: 7, pipelining: 1 },
  { label: 'bulk POST, 64 rows', batch: 64, pipelining: 1 },
  { label: 'bulk POST, 256 rows', batch: 256, pipelining: 1 },
];

/** The rows the agent posts for `stfs` announced STFs, built as the scheduler's register() does. */
function agentRows(stfs: number): NewFastMonFile[] {
  const rows: NewFastMonFile[] = [];
  for (let i = 1; i <= stfs; i++) {
    const name = stfFilename(RUN, i);
    const samples = sampleStf({
      seed: 'bench',
      runId: String(RUN),
      stfFilename: name,
      tfCount: TF_COUNT,
      stfSizeBytes: STF_BYTES,
      settings: SETTINGS,
    });
    for (const sample of samples) {
      const record = sampleRecord(
        { filename: name, runId: String(RUN), executionId: 'stf_datataking-bench-0001' },
        {
          tfCount: TF_COUNT,
          tfCountSource: 'message',
          sizeBytes: STF_BYTES,
          stfChecksum: 'ad:0badc0de',
          header: null,
        },
        { ...sample, checksum: null, file: null },
        'fastmon-agent-bench-1',
      );
      rows.push(fastMonFileRow(record));
    }
  }
  return rows;
}

/** A minimal poster: JSON in, status and parsed JSON out, as the agent's client reads every answer. */
async function post(
  pool: Pool,
  double: MonitorDouble,
  endpoint: string,
  body: unknown,
  pipelined: boolean,
): Promise<{ status: number; body: unknown }> {
  const res = await pool.request({
    method: 'POST',
    path: `/api${endpoint}`,
    headers: { 'content-type': 'application/json', authorization: `Token ${double.token}` },
    body: JSON.stringify(body),
    // undici pipelines a POST only when told it is idempotent (our registration is: tf_filename is unique)
    // and not blocking (by default it waits for a POST's response headers before sending anything else).
    ...(pipelined ? { idempotent: true, blocking: false } : {}),
  });
  return { status: res.statusCode, body: JSON.parse(await res.body.text()) };
}

/** Registers the samples of the first `stfs` STFs of `all` through a fresh pool; rows/s. */
async function measure(
  double: MonitorDouble,
  all: readonly NewFastMonFile[],
  variant: Variant,
  stfs: number,
): Promise<number> {
  double.reset();
  for (let i = 1; i <= stfs; i++) {
    double.addStfFile({ stf_filename: stfFilename(RUN, i), run_number: RUN, tf_count: TF_COUNT });
  }
  const rows = all.slice(0, stfs * SETTINGS.tfFilesPerStf);
  const size = Math.max(1, variant.batch);
  const units = Array.from({ length: Math.ceil(rows.length / size) }, (_, i) =>
    rows.slice(i * size, (i + 1) * size),
  );
  const pool = new Pool(`http://127.0.0.1:${double.port}`, {
    connections: CONNECTIONS,
    pipelining: variant.pipelining,
  });
  const pipelined = variant.pipelining > 1;
  let next = 0;
  let failures = 0;
  const send = async (unit: NewFastMonFile[]) => {
    if (variant.batch === 0) {
      const answer = await post(pool, double, '/fastmon-files/', unit[0], pipelined);
      if (answer.status !== 201) failures++;
      return;
    }
    const answer = await post(pool, double, '/fastmon-files/bulk/', { rows: unit }, pipelined);
    const results = (answer.body as { results?: BulkResult[] }).results ?? [];
    failures += unit.length - results.filter((r) => r.status === 201).length;
  };
  const started = performance.now();
  const lanes = Array.from({ length: CONNECTIONS * variant.pipelining }, async () => {
    while (next < units.length) {
      await send(units[next++] as NewFastMonFile[]);
      if (double.requests.length >= KEEP_REQUESTS) double.clearRequests();
    }
  });
  await Promise.all(lanes);
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  if (failures > 0 || double.fastmonFiles.length !== rows.length) {
    throw new Error(`bench bulk: ${variant.label}: ${failures} of ${rows.length} rows not created`);
  }
  return rows.length / seconds;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/** STFs per round: at least `base`, and enough for WAVES batches on every connection. */
const stfsFor = (variant: Variant, base: number) =>
  Math.max(base, Math.ceil((variant.batch * CONNECTIONS * WAVES) / SETTINGS.tfFilesPerStf));

/**
 * Short rounds with the variants interleaved, and each variant's median: load from elsewhere on the machine
 * then falls on every variant alike instead of on whichever ran when it came.
 */
export async function bulk(): Promise<Row[]> {
  const base = quick ? 150 : 600;
  const rounds = quick ? 3 : 7;
  const all = agentRows(Math.max(WARM_UP_STFS, ...VARIANTS.map((variant) => stfsFor(variant, base))));
  const double = await startMonitorDouble({ proposedBulk: true });
  try {
    const rates = VARIANTS.map((): number[] => []);
    // Warm-up, not counted. POST per row reaches its steady speed only after a few thousand requests, and
    // loses it again when the bulk variants first run through the same code (JIT), so it comes last.
    for (const variant of VARIANTS) await measure(double, all, variant, stfsFor(variant, base));
    await measure(double, all, VARIANTS[0] as Variant, WARM_UP_STFS);
    for (let round = 0; round < rounds; round++) {
      for (const [i, variant] of VARIANTS.entries()) {
        rates[i]?.push(await measure(double, all, variant, stfsFor(variant, base)));
      }
    }
    const values = rates.map(median);
    const baseline = values[0] ?? Number.NaN;
    return VARIANTS.map((variant, i) => ({
      name: `${PREFIX} ${variant.label}`,
      value: values[i] ?? Number.NaN,
      unit: 'rows/s',
      baseline: i === 0 ? '-' : (VARIANTS[0]?.label ?? ''),
      ratio: (values[i] ?? Number.NaN) / baseline,
    }));
  } finally {
    await double.close();
  }
}
