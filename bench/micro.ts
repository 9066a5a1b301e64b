// tinybench micro-benchmarks, each beside a baseline doing the plain version of the same work.

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Transform } from 'node:stream';
import { Bench } from 'tinybench';
import { stfFilename } from '../src/gen/plan.js';
import { createLogger, silentLogger } from '../src/log/logger.js';
import { MonitorLogShipper } from '../src/log/monitor-logs.js';
import { decodeMessage, tfFileRegistered } from '../src/messaging/codec.js';
import { FrameFilter } from '../src/messaging/frame-filter.js';
import { fastMonFileRow, readAnswer, type SampleRecord } from '../src/monitor/rows.js';
import { RecentKeys } from '../src/scheduler/recent-keys.js';
import { sampleRecord } from '../src/scheduler/scheduler.js';
import { CatalogRegistrar } from '../src/sinks/catalog.js';
import { Store } from '../src/store/store.js';
import { sampleStf, type TfSample, tfFilename } from '../workers/sampler.js';
import { readStfHeader } from '../workers/stf-reader.js';
import { writeStf } from '../workers/stf-writer.js';
import { quick, type Row, root, scratch, stfDescription } from './common.js';

export async function micro(): Promise<Row[]> {
  const dir = scratch('micro');
  const stf = path.join(dir, 'swf.101993.000001.stf');
  writeFileSync(
    stf,
    JSON.stringify({ run_id: 101993, state: 'run', substate: 'physics', filename: 'swf.101993.000001.stf' }),
  );
  const body = readFileSync(path.join(root, 'examples/run-100001/messages.jsonl'), 'utf8').split(
    '\n',
  )[3] as string;
  const settings = { tfFilesPerStf: 7, tfSizeFraction: 0.15, tfSequenceStart: 1 };
  const binary = path.join(dir, 'swf.101993.000002.stf');
  await writeStf(binary, stfDescription(1000, 1000), (_tf, _o, into) => {
    into.fill(7);
  });
  const sampling = {
    seed: 's',
    runId: '101993',
    stfFilename: 'swf.101993.000001.stf',
    tfCount: 1000,
    stfSizeBytes: 2e9,
    settings,
  };
  const samples = sampleStf(sampling);
  // What the scheduler sends for one STF: the FastMonFile POST bodies and the notifications.
  const payloads = (s: TfSample, i: number) => {
    const record = benchRecord(s, 'swf.101993.000001.stf');
    return {
      row: fastMonFileRow(record),
      body: tfFileRegistered({
        ...record,
        processedBy: 'swf-fastmon-bench',
        runId: '101993',
        executionId: 'exec-1',
        tfFileId: `00000000-0000-4000-8000-00000000000${i}`,
        status: 'registered',
      }),
    };
  };
  const prebuilt = samples.map(payloads);
  // The catalog sink against the same lines appended and synced by hand: one STF's samples per
  // operation, registered at once as the scheduler does.
  const store = await Store.acquire({ file: path.join(dir, 'catalog.sqlite') });
  const catalog = new CatalogRegistrar(store, silentLogger(), true);
  let stfSerial = 0;
  const nextStfRecords = () => {
    const stf = stfFilename(101993, ++stfSerial);
    return samples.map((s) =>
      benchRecord({ ...s, tfFilename: tfFilename(stf, settings.tfSequenceStart + s.index) }, stf),
    );
  };
  const plain = await open(path.join(dir, 'plain.jsonl'), 'a');
  const now = new Date().toISOString();
  const lines = nextStfRecords().map((r, i) =>
    JSON.stringify({
      kind: 'fastmon_file',
      tf_file_id: `00000000-0000-4000-8000-00000000000${i}`,
      ...fastMonFileRow(r),
      created_at: now,
      updated_at: now,
    }),
  );
  // 100 MESSAGE frames as ActiveMQ delivers stf_ready, as one socket read: through the inbound
  // frame filter that enforces the frame limits, against the least any framing costs: finding
  // where each frame ends.
  const frame = `MESSAGE\ncontent-length:${Buffer.byteLength(body)}\nexpires:0\ndestination:/topic/epictopic\nsubscription:1\npriority:4\nmessage-id:ID:host-1:1:1:1:1\ntimestamp:1700000000000\n\n${body}\0\n`;
  const frames = Buffer.from(frame.repeat(100));
  // Each stream's transform is called directly and what it pushes is dropped: timed through
  // write(), the stream's buffering would be timed instead (writes queue behind the readable side).
  const direct = (stream: Transform) => {
    (stream as unknown as { push: (chunk: Buffer) => boolean }).push = () => true;
    return (chunk: Buffer) => stream._transform(chunk, 'utf8', () => {});
  };
  const filter = direct(new FrameFilter());
  // swf-monitor's answer to one FastMonFile POST, as it serializes the row (fields='__all__').
  const answer = JSON.stringify({
    ...(prebuilt[0] as { row: object }).row,
    tf_file_id: '00000000-0000-4000-8000-000000000000',
    created_at: now,
    updated_at: now,
  });
  const bench = new Bench(quick ? { time: 200, warmupTime: 50 } : { time: 1500 });
  bench
    .add('100 STOMP frames split at their NULs (baseline)', () => {
      for (let at = frames.indexOf(0); at !== -1; at = frames.indexOf(0, at + 1));
    })
    .add('100 STOMP frames through the inbound frame filter', () => {
      filter(frames);
    })
    .add('JSON.parse of stf_ready (baseline)', () => {
      JSON.parse(body);
    })
    .add('decode + validate stf_ready', () => {
      decodeMessage(body);
    })
    .add('JSON.parse of a FastMonFile POST answer (baseline)', () => {
      JSON.parse(answer);
    })
    .add('parse + check a FastMonFile POST answer', () => {
      readAnswer('fastMonFile', JSON.parse(answer), 'POST /fastmon-files/');
    })
    .add('sample 7 ranges of a 1000-TF STF', () => {
      sampleStf(sampling);
    })
    .add('readFile of the STF (baseline)', async () => {
      await readFile(stf);
    })
    .add('STF header read', async () => {
      await readStfHeader(stf);
    })
    .add('read of the first 64 KiB of a binary STF (baseline)', async () => {
      const handle = await open(binary, 'r');
      await handle.read(Buffer.alloc(64 * 1024), 0, 64 * 1024, 0);
      await handle.close();
    })
    .add('binary STF header + 1000-TF index read', async () => {
      await readStfHeader(binary);
    });
  // The sinks' side, timed for less long in --quick mode to keep it under a second and a half.
  const sinks = new Bench(quick ? { time: 200, warmupTime: 50 } : { time: 1500 });
  sinks
    .add('JSON.stringify of 7 prebuilt rows and notifications (baseline)', () => {
      for (const p of prebuilt) {
        JSON.stringify(p.row);
        JSON.stringify(p.body);
      }
    })
    .add('monitor payload build: 7 FastMonFile rows + tf_file_registered', () => {
      for (const [i, sample] of samples.entries()) {
        const p = payloads(sample, i);
        JSON.stringify(p.row);
        JSON.stringify(p.body);
      }
    })
    .add('append of the same 7 lines + fdatasync (baseline)', async () => {
      for (const line of lines) await plain.appendFile(`${line}\n`);
      await plain.datasync();
    })
    .add('catalog insert: 7 samples of one STF', async () => {
      await Promise.all(nextStfRecords().map((r) => catalog.register(r)));
    });
  await bench.run();
  await sinks.run();
  await catalog.close();
  await plain.close();
  rmSync(dir, { recursive: true, force: true });
  const hz = (name: string) =>
    [...bench.tasks, ...sinks.tasks].find((t) => t.name === name)?.result?.throughput?.mean ?? Number.NaN;
  const row = (name: string, baseline: string): Row => ({
    name,
    value: hz(name),
    unit: 'ops/s',
    baseline,
    ratio: hz(name) / hz(baseline),
  });
  return [
    row(
      '100 STOMP frames through the inbound frame filter',
      '100 STOMP frames split at their NULs (baseline)',
    ),
    row('decode + validate stf_ready', 'JSON.parse of stf_ready (baseline)'),
    row('parse + check a FastMonFile POST answer', 'JSON.parse of a FastMonFile POST answer (baseline)'),
    row('sample 7 ranges of a 1000-TF STF', 'JSON.parse of stf_ready (baseline)'),
    row('STF header read', 'readFile of the STF (baseline)'),
    row('binary STF header + 1000-TF index read', 'read of the first 64 KiB of a binary STF (baseline)'),
    row(
      'monitor payload build: 7 FastMonFile rows + tf_file_registered',
      'JSON.stringify of 7 prebuilt rows and notifications (baseline)',
    ),
    row('catalog insert: 7 samples of one STF', 'append of the same 7 lines + fdatasync (baseline)'),
    dedupeMemory(),
    logShipping(),
  ];
}

/**
 * What shipping log records to swf-monitor's AppLog adds to a log call on the hot path (the agent's
 * "STF sampled" line): the same logger with and without the shipper's queue as a second pino
 * stream. Parsing and posting happen later, on the shipper's timer, and are not in this figure.
 * A plain loop, as tinybench would give the timer no turn and the queue no bound to test.
 */
function logShipping(): Row {
  const count = quick ? 50_000 : 200_000;
  const sink = { write: (_line: string) => {} };
  const fields = {
    run: '101993',
    stf: 'swf.101993.000001.stf',
    msgId: 'ID:bench-1',
    samples: 7,
    registered: 7,
  };
  const rate = (ship: boolean) => {
    const shipper = new MonitorLogShipper({ url: 'http://127.0.0.1:9', maxQueue: count + 1 });
    const logger = createLogger({
      level: 'info',
      destination: sink,
      ship: ship ? { shipper, level: 'info' } : undefined,
    }).child({ agent: 'bench' });
    for (let i = 0; i < 2000; i++) logger.info(fields, 'STF sampled');
    const started = performance.now();
    for (let i = 0; i < count; i++) logger.info(fields, 'STF sampled');
    const perS = count / ((performance.now() - started) / 1000);
    void shipper.close(0);
    return perS;
  };
  // Alternated and the best of three kept: the first loops also warm pino up.
  let without = 0;
  let withShipping = 0;
  for (let round = 0; round < 3; round++) {
    without = Math.max(without, rate(false));
    withShipping = Math.max(withShipping, rate(true));
  }
  return {
    name: 'log call with AppLog shipping (queued for the timer)',
    value: withShipping,
    unit: 'ops/s',
    baseline: 'the same log call without shipping',
    ratio: withShipping / without,
  };
}

/**
 * The scheduler's memory of the last 100,000 completed STFs, once full (fingerprints in flat tables
 * off the JS heap), against what it did before: the key strings in a Set, a ring beside it for the
 * order. A plain loop, not tinybench: a Set's cost rises and falls with V8's rehashing of its table,
 * so both run the same long stretch (a whole cycle in a full run).
 */
function dedupeMemory(): Row {
  const capacity = 100_000;
  const count = quick ? 40_000 : 200_000;
  const keys = Array.from({ length: capacity + count }, (_, i) => `101993/${stfFilename(101993, i)}`);
  const rate = (remember: (key: string) => void) => {
    for (let i = 0; i < capacity; i++) remember(keys[i] as string);
    const started = performance.now();
    for (let i = capacity; i < keys.length; i++) remember(keys[i] as string);
    return count / ((performance.now() - started) / 1000);
  };
  const recent = new RecentKeys(capacity);
  const ring = rate((key) => recent.add(key));
  const set = new Set<string>();
  const order: string[] = [];
  let oldest = 0;
  const before = rate((key) => {
    if (set.has(key)) return;
    if (order.length < capacity) {
      order.push(key);
    } else {
      set.delete(order[oldest] as string);
      order[oldest] = key;
      oldest = (oldest + 1) % capacity;
    }
    set.add(key);
  });
  return {
    name: `dedupe memory: ${count.toLocaleString('en')} STFs remembered past 100,000`,
    value: ring,
    unit: 'ops/s',
    baseline: 'the key strings in a Set, with a ring (before)',
    ratio: ring / before,
  };
}

/** A sample of a binary STF as the worker returns it after extraction, recorded as the scheduler does. */
function benchRecord(s: TfSample, stfFilename: string): SampleRecord {
  return sampleRecord(
    { filename: stfFilename, runId: '101993', executionId: 'exec-1' },
    {
      tfCount: 1000,
      tfCountSource: 'header',
      sizeBytes: 2e9,
      stfChecksum: 'ad:3915264619',
      header: {
        format: 'epicstf',
        sizeBytes: 2e9,
        tfCount: 1000,
        runId: '101993',
        state: 'run',
        substate: 'physics',
        sequence: 1,
        start: null,
        end: null,
      },
    },
    { ...s, checksum: 'ad:3915264619', file: `/data/fastmon/101993/${s.tfFilename}` },
    'swf-fastmon-bench',
  );
}
