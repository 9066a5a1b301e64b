// Runs the agent with one input until it ends or a stop signal comes: the broker, a replay file, or directories.

import { collectDefaultMetrics } from 'prom-client';
import { type Agent, type AgentOptions, buildAgent } from '../agent/agent.js';
import type { Config } from '../config/load.js';
import { isFastmonError } from '../errors.js';
import { type DirectoryMode, feedDirectories } from '../inputs/directories.js';
import { Ledger } from '../inputs/ledger.js';
import { replayFile } from '../inputs/replay.js';
import { emptyScanCounts, type ScanCounts } from '../inputs/scan.js';
import { createLogger, type Logger } from '../log/logger.js';
import { type MonitorLogShipper, monitorLogShipper } from '../log/monitor-logs.js';
import { limitHeapGrowth } from '../ops/heap-growth.js';
import { emptyCounts } from '../run/counts.js';
import { storeOptions } from '../store/paths.js';
import { Store } from '../store/store.js';
import { stopBoundMs, terminalNotifications } from './common.js';
import { endOfJobSummary } from './end-of-job.js';
import { requireDirectory } from './inputs.js';
import { humanRate, ProgressLine } from './progress.js';
import { interruptedCode, onStopSignals, type Stopping } from './signals.js';

/** The agent's logger; with swf-monitor configured its records also go to AppLog (monitor.log_level). */
function agentLogger(config: Config): { logger: Logger; logShipper?: MonitorLogShipper } {
  const shipper = monitorLogShipper(config);
  const ship = shipper ? { shipper, level: config.monitor.logLevel } : undefined;
  return { logger: createLogger({ level: config.agent.logLevel, ship }), logShipper: shipper ?? undefined };
}

/**
 * Builds the agent; a stop signal while it waits for swf-monitor ends the command like any stop
 * (null). Whatever fails, the log shipper is closed when no agent will close it.
 */
async function build(options: AgentOptions, stopping: Stopping): Promise<Agent | null> {
  try {
    return await buildAgent(options, stopping.signal);
  } catch (err) {
    await options.logShipper?.close(2000);
    if (isFastmonError(err, 'SHUTDOWN')) return null;
    stopping.dispose();
    throw err;
  }
}

/** The end-of-job summary; an agent stopped before it had a name has nothing to count. */
function printSummary(agent: Agent | null, started: number): void {
  process.stdout.write(
    agent
      ? endOfJobSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all())
      : endOfJobSummary('', Date.now() - started, emptyCounts(), []),
  );
}

/** `agent --replay FILE`: the messages of the file, then exit. */
export async function runReplay(config: Config, file: string): Promise<number> {
  const { logger, logShipper } = agentLogger(config);
  const stopping = onStopSignals({ graceMs: stopBoundMs(config), notify: (text) => logger.warn(text) });
  const started = Date.now();
  const options: AgentOptions = {
    config,
    logger,
    consume: false,
    logShipper,
    input: 'replay',
    formatNotification: terminalNotifications(),
  };
  const agent = await build(options, stopping);
  let messages = 0;
  try {
    if (agent) {
      await agent.start(stopping.signal);
      messages = await replayFile(
        agent.messages,
        agent.scheduler,
        file,
        config.agent.maxInFlight * 2,
        stopping.signal,
      );
      await agent.idle();
    }
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  } finally {
    await agent?.stop(
      stopping.name ? `received ${stopping.name}` : `replay of ${messages} messages finished`,
    );
    stopping.dispose();
  }
  printSummary(agent, started);
  return stopping.name ? interruptedCode(stopping.name) : 0;
}

/** `agent` in message mode: the broker subscription until a stop signal. */
export async function runConsumer(config: Config): Promise<number> {
  const { logger, logShipper } = agentLogger(config);
  const stopping = onStopSignals({ graceMs: stopBoundMs(config), notify: (text) => logger.warn(text) });
  const started = Date.now();
  const agent = await build({ config, logger, logShipper, input: 'broker' }, stopping);
  if (agent) {
    // Process-wide figures (RSS, heap, event-loop lag) belong to the process, so only the command adds them.
    collectDefaultMetrics({ register: agent.metrics.registry });
    try {
      await agent.start(stopping.signal);
    } catch (err) {
      if (!isFastmonError(err, 'SHUTDOWN')) {
        await agent.stop('start-up failed');
        stopping.dispose();
        throw err;
      }
    }
  }
  const signal = await stopping.received;
  await agent?.stop(`received ${signal}`);
  stopping.dispose();
  printSummary(agent, started);
  return 0;
}

/**
 * `scan`, `watch` and `agent` in continuous mode: the same agent, scheduler and worker pool as
 * message mode, fed from the directories instead of stf_ready. Every directory is checked before
 * the ledger, the pool or the broker connection exist.
 */
export async function runDirectories(
  mode: DirectoryMode,
  given: string[],
  config: Config,
  metricsPort = false,
): Promise<number> {
  const dirs = given.map((dir) => requireDirectory(dir, `${mode} directory`));
  // Kept for the process's life: a watch scans again at every poll.
  limitHeapGrowth();
  // The directories given are where STFs are read from.
  config.agent.dataRoots = [...new Set([...config.agent.dataRoots, ...dirs])];
  const progress = new ProgressLine(process.stderr);
  const logger = createLogger({ level: config.agent.logLevel, destination: progress.loggerStream() });
  const stopping = onStopSignals({ graceMs: stopBoundMs(config), notify: (text) => logger.warn(text) });
  const started = Date.now();
  // scan/watch open no /metrics port unless asked (agent.http_port set): a scan beside a running
  // agent must not take its port. The agent in continuous mode opens one, as in message mode.
  const options: AgentOptions = {
    config,
    logger,
    consume: false,
    metricsPort,
    input: mode,
    formatNotification: terminalNotifications(),
  };
  const counts = emptyScanCounts();
  const draw = (force = false) => progress.update(progressText(counts, started), null, force);
  let agent: Agent | null = null;
  let ledger: Ledger | null = null;
  try {
    agent = await build(options, stopping);
    if (agent) {
      ledger = new Ledger(await Store.acquire(storeOptions(config, logger)), true);
      await agent.start(stopping.signal);
      logger.info(
        { dirs, store: ledger.file, ledger: ledger.size, shard: config.scan.shard || null },
        `${mode} starting`,
      );
      const ctx = { scheduler: agent.scheduler, ledger, config, logger, counts, signal: stopping.signal };
      await feedDirectories(mode, dirs, { ...ctx, onProgress: draw }, stopping.received);
    }
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  } finally {
    progress.finish(progressText(counts, started));
    await agent?.stop(stopping.name ? `received ${stopping.name}` : `${mode} finished`);
    await ledger?.close();
    stopping.dispose();
  }
  printSummary(agent, started);
  process.stdout.write(`${scanLine(counts)}\n`);
  if (mode === 'scan' && stopping.name) return interruptedCode(stopping.name);
  return mode === 'scan' && counts.failed + counts.unreadable > 0 && config.scan.failExit ? 1 : 0;
}

function progressText(c: ScanCounts, started: number): string {
  const seconds = (Date.now() - started) / 1000;
  return `${c.seen} files seen, ${c.sampled} sampled, ${c.failed + c.unreadable} failed, ${c.already} done before  ${humanRate(c.seen, seconds)} files/s  ${seconds.toFixed(1)} s`;
}

function scanLine(c: ScanCounts): string {
  return (
    `files: ${c.seen} seen, ${c.sampled} sampled, ${c.skipped} skipped, ${c.failed} failed, ` +
    `${c.unreadable} unreadable, ${c.already} handled before, ${c.old} too old, ${c.otherShard} in other shards`
  );
}
