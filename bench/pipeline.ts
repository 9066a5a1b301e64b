// The agent's whole path without broker or monitor, with and without the worker pool.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { buildAgent } from '../src/agent/agent.js';
import { loadConfig } from '../src/config/load.js';
import { stfFilename } from '../src/gen/plan.js';
import { silentLogger } from '../src/log/logger.js';
import { quick, type Row, scratch } from './common.js';

/** The whole agent path without broker or monitor: replayed stf_ready → worker → catalog → stream. */
async function endToEnd(stfs: number, inline: boolean, workers: number): Promise<number> {
  const dir = scratch('e2e');
  const data = path.join(dir, 'data');
  mkdirSync(data);
  for (let i = 1; i <= stfs; i++) {
    writeFileSync(path.join(data, stfFilename(101993, i)), JSON.stringify({ run_id: 101993 }));
  }
  const { config } = loadConfig({
    env: {},
    flags: new Map<string, string | string[]>([
      ['agent.catalog', path.join(dir, 'fastmon.sqlite')],
      ['agent.data_roots', [data]],
      ['agent.http_port', '-1'],
      ['agent.workers', String(workers)],
    ]),
  });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const agent = await buildAgent({ config, logger: silentLogger(), stdout: sink, consume: false, inline });
  await agent.start();
  const started = performance.now();
  const work: Promise<unknown>[] = [];
  for (let i = 1; i <= stfs; i++) {
    const filename = stfFilename(101993, i);
    work.push(agent.handleMessage(JSON.stringify({ msg_type: 'stf_ready', run_id: '101993', filename })));
  }
  await Promise.all(work);
  const seconds = (performance.now() - started) / 1000;
  await agent.stop('bench');
  rmSync(dir, { recursive: true, force: true });
  return stfs / seconds;
}

export async function pipeline(): Promise<Row[]> {
  const stfs = quick ? 500 : 3000;
  const inline = await endToEnd(stfs, true, 1);
  const pool1 = await endToEnd(stfs, false, 1);
  const pool2 = await endToEnd(stfs, false, 2);
  return [
    {
      name: `replay end to end, inline (no pool), ${stfs} STFs`,
      value: inline,
      unit: 'STFs/s',
      baseline: '-',
      ratio: 1,
    },
    {
      name: 'replay end to end, pool of 1 worker',
      value: pool1,
      unit: 'STFs/s',
      baseline: 'inline',
      ratio: pool1 / inline,
    },
    {
      name: 'replay end to end, pool of 2 workers',
      value: pool2,
      unit: 'STFs/s',
      baseline: 'inline',
      ratio: pool2 / inline,
    },
  ];
}
