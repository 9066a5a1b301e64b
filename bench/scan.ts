// Scan mode: enumeration beside `find` on the same tree, end-to-end files/s with header reads, peak RSS.

import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { buildAgent } from '../src/agent/agent.js';
import { loadConfig } from '../src/config/load.js';
import { Ledger } from '../src/inputs/ledger.js';
import { emptyScanCounts, scanOnce } from '../src/inputs/scan.js';
import { compilePatterns } from '../src/inputs/select.js';
import { walk } from '../src/inputs/walk.js';
import { silentLogger } from '../src/log/logger.js';
import { limitHeapGrowth } from '../src/ops/heap-growth.js';
import { storeOptions } from '../src/store/paths.js';
import { Store } from '../src/store/store.js';
import { quick, type Row, scratch } from './common.js';

/**
 * Files are hard links to one small JSON STF per directory: each is still its own directory
 * entry to list and stat, but the tree is built in seconds instead of minutes (a new inode costs
 * about 1 ms on these disks). tmpfs is used when there is one, so `find` and the walk are
 * measured against the same cached tree rather than the disk.
 */
function buildTree(files: number): string {
  const top = scratch('tree', existsSync('/dev/shm') ? '/dev/shm' : undefined);
  const perDir = 1000;
  for (let d = 0; d * perDir < files; d++) {
    const dir = path.join(top, `d${d}`);
    mkdirSync(dir);
    const seed = path.join(dir, `swf.107000.${String(d * perDir).padStart(6, '0')}.stf`);
    writeFileSync(seed, '{"run_id": 107000}');
    for (let i = 1; i < perDir && d * perDir + i < files; i++) {
      linkSync(seed, path.join(dir, `swf.107000.${String(d * perDir + i).padStart(6, '0')}.stf`));
    }
  }
  return top;
}

/** The 1-minute load average, for the rows' baseline: the machine is shared, speeds vary with it. */
function load(): string {
  return `load ${loadavg()[0]?.toFixed(1)}`;
}

function seconds(fn: () => void): number {
  const started = performance.now();
  fn();
  return (performance.now() - started) / 1000;
}

async function enumeration(tree: string, files: number): Promise<Row[]> {
  const find = seconds(() => spawnSync('sh', ['-c', `find "${tree}" -type f | wc -l`], { encoding: 'utf8' }));
  const findStat = findWithStat(tree);
  const match = compilePatterns(['*.stf']);
  const started = performance.now();
  let seen = 0;
  for await (const entry of walk([tree], { recursive: true, match })) if (entry.kind === 'file') seen++;
  const walkS = (performance.now() - started) / 1000;
  const at = load();
  if (seen !== files) throw new Error(`walk saw ${seen} of ${files} files`);
  return [
    { name: `find -type f, ${files} files`, value: files / find, unit: 'files/s', baseline: '-', ratio: 1 },
    {
      name: "find -printf '%p %s %T@' (lists and stats)",
      value: files / findStat,
      unit: 'files/s',
      baseline: 'find',
      ratio: find / findStat,
    },
    {
      name: 'walk (lists and stats every file)',
      value: files / walkS,
      unit: 'files/s',
      baseline: `find -printf, same run (${at})`,
      ratio: findStat / walkS,
    },
  ];
}

/** Seconds `find` takes to list the tree with each file's path, size and mtime: the floor of a second pass. */
function findWithStat(tree: string): number {
  return seconds(() => spawnSync('sh', ['-c', `find "${tree}" -type f -printf '%p %s %T@\\n' > /dev/null`]));
}

/**
 * The scan pipeline in-process, into the local store: walk, ledger, worker header reads, catalog,
 * broadcast to a sink. Then a second pass over the unchanged tree (every file found in the ledger).
 * RSS is sampled as the first pass goes: what it is once a tenth of the files were seen, and at the end.
 */
async function endToEnd(tree: string, files: number): Promise<Row[]> {
  const dir = scratch('scan-e2e');
  const { config } = loadConfig({
    env: {},
    flags: new Map<string, string | string[]>([
      ['agent.catalog', path.join(dir, 'fastmon.sqlite')],
      ['agent.data_roots', [tree]],
      ['agent.http_port', '-1'],
      ['sampling.tf_files_per_stf', '1'],
      ['scan.recursive', 'true'],
    ]),
  });
  // As `swf-fastmon scan` sets it (src/cli/run-agent.ts); given back to V8 for the benches after this one.
  const restoreHeapGrowth = limitHeapGrowth();
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const agent = await buildAgent({ config, logger: silentLogger(), stdout: sink, consume: false });
  await agent.start();
  const ledger = new Ledger(await Store.acquire(storeOptions(config, silentLogger())), true);
  const counts = emptyScanCounts();
  let peak = process.memoryUsage().rss;
  let atTenth = 0;
  const sampler = setInterval(() => {
    const rss = process.memoryUsage().rss;
    peak = Math.max(peak, rss);
    if (atTenth === 0 && counts.seen >= files / 10) atTenth = rss;
  }, 100);
  const started = performance.now();
  await scanOnce([tree], { scheduler: agent.scheduler, ledger, config, logger: silentLogger(), counts });
  const elapsed = (performance.now() - started) / 1000;
  const firstLoad = load();
  clearInterval(sampler);
  const atEnd = process.memoryUsage().rss;
  if (counts.sampled !== files) throw new Error(`scan sampled ${counts.sampled} of ${files}`);
  // The baseline is taken right before the pass: the tree is as cached for both.
  const findS = findWithStat(tree);
  const again = emptyScanCounts();
  const secondStarted = performance.now();
  await scanOnce([tree], {
    scheduler: agent.scheduler,
    ledger,
    config,
    logger: silentLogger(),
    counts: again,
  });
  const secondS = (performance.now() - secondStarted) / 1000;
  const secondLoad = load();
  if (again.already !== files)
    throw new Error(`second pass found ${again.already} of ${files} in the ledger`);
  await agent.stop('bench');
  await ledger.close();
  restoreHeapGrowth();
  rmSync(dir, { recursive: true, force: true });
  return [
    {
      name: `scan end to end into the local store (header read, register, notify), ${files} files`,
      value: files / elapsed,
      unit: 'files/s',
      baseline: `goal 10000 files/s (${firstLoad})`,
      ratio: files / elapsed / 10_000,
    },
    {
      name: 'scan peak RSS (main thread and workers)',
      value: peak / 1e6,
      unit: 'MB',
      baseline: 'goal 250 MB',
      ratio: peak / 250e6,
    },
    {
      name: 'scan RSS growth from a tenth of the files to the end',
      value: (atEnd - (atTenth || atEnd)) / 1e6,
      unit: 'MB',
      baseline: 'RSS at a tenth',
      ratio: atTenth ? atEnd / atTenth : 1,
    },
    {
      name: `scan second pass over the unchanged tree, ${files} files`,
      value: files / secondS,
      unit: 'files/s',
      baseline: `find -printf, same run (${secondLoad})`,
      ratio: findS / secondS,
    },
  ];
}

export async function scan(): Promise<Row[]> {
  const enumerated = quick ? 50_000 : 1_000_000;
  const tree = buildTree(enumerated);
  try {
    const rows = await enumeration(tree, enumerated);
    const e2eFiles = Number(process.env.FASTMON_BENCH_SCAN_FILES ?? (quick ? 3000 : 100_000));
    const small = buildTree(e2eFiles);
    try {
      rows.push(...(await endToEnd(small, e2eFiles)));
    } finally {
      rmSync(small, { recursive: true, force: true });
    }
    return rows;
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}
