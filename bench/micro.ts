// tinybench micro-benchmarks, each beside a baseline doing the plain version of the same work.

import { readFileSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Bench } from 'tinybench';
import { decodeMessage } from '../src/messaging/codec.js';
import { sampleStf } from '../workers/sampler.js';
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
  const bench = new Bench({ time: quick ? 300 : 1500 });
  bench
    .add('JSON.parse of stf_ready (baseline)', () => {
      JSON.parse(body);
    })
    .add('decode + validate stf_ready', () => {
      decodeMessage(body);
    })
    .add('sample 7 ranges of a 1000-TF STF', () => {
      sampleStf({
        seed: 's',
        runId: '101993',
        stfFilename: 'swf.101993.000001.stf',
        tfCount: 1000,
        stfSizeBytes: 2e9,
        settings,
      });
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
  await bench.run();
  const hz = (name: string) =>
    bench.tasks.find((t) => t.name === name)?.result?.throughput?.mean ?? Number.NaN;
  const row = (name: string, baseline: string): Row => ({
    name,
    value: hz(name),
    unit: 'ops/s',
    baseline,
    ratio: hz(name) / hz(baseline),
  });
  return [
    row('decode + validate stf_ready', 'JSON.parse of stf_ready (baseline)'),
    row('sample 7 ranges of a 1000-TF STF', 'JSON.parse of stf_ready (baseline)'),
    row('STF header read', 'readFile of the STF (baseline)'),
    row('binary STF header + 1000-TF index read', 'read of the first 64 KiB of a binary STF (baseline)'),
  ];
}
