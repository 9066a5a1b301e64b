// `swf-fastmon scan DIR…` (one pass) and `swf-fastmon watch DIR…` (scan, then follow new files).

import path from 'node:path';
import { Agent } from '../agent/agent.js';
import { formatSummary } from '../agent/summary.js';
import { type ExtraFlag, parseArgs } from '../config/args.js';
import type { Config } from '../config/load.js';
import { FastmonError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { Ledger } from '../scan/ledger.js';
import { emptyScanCounts, type ScanContext, type ScanCounts, scanOnce } from '../scan/scan.js';
import { DirectoryWatcher } from '../scan/watch.js';
import { storeOptions } from '../store/paths.js';
import { Store } from '../store/store.js';
import { commandConfig } from './common.js';
import { configHelp } from './help.js';
import { humanRate, ProgressLine } from './progress.js';

const FLAGS: readonly ExtraFlag[] = [
  {
    name: 'config',
    takesValue: true,
    doc: 'TOML file with [broker], [monitor], [agent], [sampling], [scan] sections',
  },
  {
    name: 'print-config',
    takesValue: false,
    doc: 'print the resolved configuration (secrets redacted) and exit',
  },
  { name: 'help', alias: 'h', takesValue: false, doc: 'this help' },
];

export function scanCommand(argv: readonly string[]): Promise<number> {
  return run('scan', argv);
}

export function watchCommand(argv: readonly string[]): Promise<number> {
  return run('watch', argv);
}

async function run(mode: 'scan' | 'watch', argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.options.get('help')) {
    process.stdout.write(help(mode));
    return 0;
  }
  const config = commandConfig(args);
  if (!config) return 0;
  const dirs =
    args.positionals.length > 0 ? args.positionals.map((d) => path.resolve(d)) : config.scan.watchDirs;
  if (dirs.length === 0)
    throw new FastmonError('CONFIG_INVALID', `${mode} needs at least one directory (see --help)`);
  return runDirectories(mode, dirs, config);
}

/**
 * The body of `scan`, `watch` and `agent` in continuous mode: the same agent, scheduler and
 * worker pool as message mode, fed from the directories instead of stf_ready.
 */
export async function runDirectories(
  mode: 'scan' | 'watch',
  dirs: string[],
  config: Config,
  metricsPort = false,
): Promise<number> {
  // The directories given are where STFs are read from.
  config.agent.dataRoots = [...new Set([...config.agent.dataRoots, ...dirs])];
  const progress = new ProgressLine(process.stderr);
  const logger = createLogger({ level: config.agent.logLevel, destination: progress.loggerStream() });
  const started = Date.now();
  // scan/watch open no /metrics port unless asked (agent.http_port set): a scan beside a running
  // agent must not take its port. The agent in continuous mode opens one, as in message mode.
  const agent = new Agent({ config, logger, consume: false, metricsPort });
  const abort = new AbortController();
  let interrupted: string | null = null;
  const stopped = new Promise<string>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) {
      process.on(signal, () => {
        if (interrupted) process.exit(1);
        interrupted = signal;
        abort.abort();
        resolve(signal);
      });
    }
  });
  const ledger = new Ledger(await Store.acquire(storeOptions(config, logger)), true);
  const counts = emptyScanCounts();
  const draw = (force = false) => progress.update(progressText(counts, started), null, force);
  const ctx: ScanContext = { agent, ledger, config, logger, counts, signal: abort.signal, onProgress: draw };
  try {
    await agent.start(abort.signal);
    logger.info(
      { dirs, mode, store: ledger.file, ledger: ledger.size, shard: config.scan.shard || null },
      `${mode} starting`,
    );
    if (mode === 'scan') {
      await scanOnce(dirs, ctx);
    } else {
      const watcher = new DirectoryWatcher(dirs, ctx);
      await watcher.start();
      logger.info({ dirs }, 'initial scan done; watching for new STFs');
      await stopped;
      await watcher.close();
    }
  } finally {
    progress.finish(progressText(counts, started));
    await agent.stop(interrupted ? `received ${interrupted}` : `${mode} finished`);
    await ledger.close();
  }
  process.stdout.write(formatSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()));
  process.stdout.write(`${scanLine(counts)}\n`);
  if (mode === 'scan' && interrupted) return 130;
  return mode === 'scan' && counts.failed + counts.unreadable > 0 && config.scan.failExit ? 1 : 0;
}

function progressText(c: ScanCounts, started: number): string {
  const seconds = (Date.now() - started) / 1000;
  return `${c.seen} files seen, ${c.sampled} sampled, ${c.failed + c.unreadable} failed, ${c.already} done before  ${humanRate(c.seen, seconds)} files/s  ${seconds.toFixed(1)} s`;
}

export function scanLine(c: ScanCounts): string {
  return (
    `files: ${c.seen} seen, ${c.sampled} sampled, ${c.skipped} skipped, ${c.failed} failed, ` +
    `${c.unreadable} unreadable, ${c.already} handled before, ${c.old} too old, ${c.otherShard} in other shards`
  );
}

function help(mode: 'scan' | 'watch'): string {
  const what =
    mode === 'scan'
      ? 'One pass over the directories: every STF matching the patterns is read, sampled, registered\n(Run and StfFile first, then the samples) and broadcast. Exits 1 when any file failed.'
      : 'An initial scan, then new STFs as they land: change events (@parcel/watcher) and a rescan\nevery poll interval; a file is taken once complete (renamed into place, or stable for settle_ms).';
  return `Usage: swf-fastmon ${mode} [options] DIR...

${what} A ledger remembers the files handled, so a restart does not process a file twice.

Options:
${FLAGS.map((f) => `  --${f.name}${f.takesValue ? ' VALUE' : ''}`.padEnd(30) + f.doc).join('\n')}

Configuration (flag > environment > --config file > default):
${configHelp()}`;
}
