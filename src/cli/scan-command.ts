// `swf-fastmon scan DIR…` (one pass) and `swf-fastmon watch DIR…` (scan, then follow new files).

import { Agent } from '../agent/agent.js';
import type { Config } from '../config/load.js';
import { FastmonError, isFastmonError } from '../errors.js';
import { Ledger } from '../inputs/ledger.js';
import { emptyScanCounts, type ScanContext, type ScanCounts, scanOnce } from '../inputs/scan.js';
import { DirectoryWatcher } from '../inputs/watch.js';
import { createLogger } from '../log/logger.js';
import { storeOptions } from '../store/paths.js';
import { Store } from '../store/store.js';
import { commandConfig, stopBoundMs, terminalNotifications } from './common.js';
import { endOfJobSummary } from './end-of-job.js';
import { requireDirectory } from './inputs.js';
import { CONFIG_OPTIONS, type CommandSpec, commandHelp, keysExcept, parseCommandLine } from './options.js';
import { humanRate, ProgressLine } from './progress.js';
import { interruptedCode, onStopSignals } from './signals.js';

/**
 * A scan feeds the agent from directories: it offers every key but those of consuming from the
 * broker (which destination, how to acknowledge, dead letters) and agent.mode (it is the mode).
 */
const SCAN_KEYS = keysExcept(
  'agent.mode',
  'broker.subscription',
  'broker.skip_own_broadcasts',
  'broker.ack',
  'broker.prefetch',
  'broker.durable_subscription',
  'broker.dead_letter',
  'agent.max_message_bytes',
);

const ABOUT = {
  scan: `One pass over the directories: every STF matching the patterns is read, sampled, registered
(Run and StfFile first, then the samples) and broadcast. Exits 1 when any file failed.`,
  watch: `An initial scan, then new STFs as they land: change events (@parcel/watcher) and a rescan
every poll interval; a file is taken once complete (renamed into place, or stable for settle_ms).`,
};

export const SCAN: CommandSpec = spec('scan');
export const WATCH: CommandSpec = spec('watch');

function spec(mode: 'scan' | 'watch'): CommandSpec {
  return {
    name: mode,
    usage: `swf-fastmon ${mode} [options] DIR...`,
    about: `${ABOUT[mode]}\nA ledger remembers the files handled, so a restart does not process a file twice.`,
    options: CONFIG_OPTIONS,
    keys: SCAN_KEYS,
    positionals: true,
  };
}

export function scanCommand(argv: readonly string[]): Promise<number> {
  return run(SCAN, argv);
}

export function watchCommand(argv: readonly string[]): Promise<number> {
  return run(WATCH, argv);
}

async function run(command: CommandSpec, argv: readonly string[]): Promise<number> {
  const mode = command.name as 'scan' | 'watch';
  const line = parseCommandLine(command, argv);
  if (line.values.help) {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  const config = commandConfig(line);
  if (!config) return 0;
  const dirs = line.positionals.length > 0 ? line.positionals : config.scan.watchDirs;
  if (dirs.length === 0)
    throw new FastmonError('CONFIG_INVALID', `${mode} needs at least one directory (see --help)`);
  return runDirectories(mode, dirs, config);
}

/**
 * The body of `scan`, `watch` and `agent` in continuous mode: the same agent, scheduler and
 * worker pool as message mode, fed from the directories instead of stf_ready. Every directory is
 * checked before the ledger, the pool or the broker connection exist.
 */
export async function runDirectories(
  mode: 'scan' | 'watch',
  given: string[],
  config: Config,
  metricsPort = false,
): Promise<number> {
  const dirs = given.map((dir) => requireDirectory(dir, `${mode} directory`));
  // The directories given are where STFs are read from.
  config.agent.dataRoots = [...new Set([...config.agent.dataRoots, ...dirs])];
  const progress = new ProgressLine(process.stderr);
  const logger = createLogger({ level: config.agent.logLevel, destination: progress.loggerStream() });
  const stopping = onStopSignals({ graceMs: stopBoundMs(config), notify: (text) => logger.warn(text) });
  const started = Date.now();
  // scan/watch open no /metrics port unless asked (agent.http_port set): a scan beside a running
  // agent must not take its port. The agent in continuous mode opens one, as in message mode.
  const agent = new Agent({
    config,
    logger,
    consume: false,
    metricsPort,
    input: mode,
    formatNotification: terminalNotifications(),
  });
  const ledger = new Ledger(await Store.acquire(storeOptions(config, logger)), true);
  const counts = emptyScanCounts();
  const draw = (force = false) => progress.update(progressText(counts, started), null, force);
  const ctx: ScanContext = {
    agent,
    ledger,
    config,
    logger,
    counts,
    signal: stopping.signal,
    onProgress: draw,
  };
  try {
    await agent.start(stopping.signal);
    logger.info(
      { dirs, store: ledger.file, ledger: ledger.size, shard: config.scan.shard || null },
      `${mode} starting`,
    );
    if (mode === 'scan') {
      await scanOnce(dirs, ctx);
    } else {
      const watcher = new DirectoryWatcher(dirs, ctx);
      await watcher.start();
      logger.info({ dirs }, 'initial scan done; watching for new STFs');
      await stopping.received;
      await watcher.close();
    }
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  } finally {
    progress.finish(progressText(counts, started));
    await agent.stop(stopping.name ? `received ${stopping.name}` : `${mode} finished`);
    await ledger.close();
    stopping.dispose();
  }
  process.stdout.write(
    endOfJobSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()),
  );
  process.stdout.write(`${scanLine(counts)}\n`);
  if (mode === 'scan' && stopping.name) return interruptedCode(stopping.name);
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
