// `swf-fastmon agent`: the message-driven agent (broker or --replay), stopped by the shared signal handling.

import { collectDefaultMetrics } from 'prom-client';
import { Agent } from '../agent/agent.js';
import type { Config } from '../config/load.js';
import { FastmonError, isFastmonError } from '../errors.js';
import { replayFile } from '../inputs/replay.js';
import { createLogger, type Logger } from '../log/logger.js';
import { type MonitorLogShipper, monitorLogShipper } from '../log/monitor-logs.js';
import { commandConfig, stopBoundMs, terminalNotifications } from './common.js';
import { endOfJobSummary } from './end-of-job.js';
import { requireReadableFile } from './inputs.js';
import { CONFIG_OPTIONS, type CommandSpec, commandHelp, keysExcept, parseCommandLine } from './options.js';
import { runDirectories } from './scan-command.js';
import { interruptedCode, onStopSignals } from './signals.js';

export const AGENT: CommandSpec = {
  name: 'agent',
  usage: 'swf-fastmon agent [options]',
  about: `Consumes stf_ready and run lifecycle messages, samples TF ranges from each STF in a worker
pool, records them in swf-monitor (or the local catalog) and broadcasts tf_file_registered.
With agent.mode continuous it watches directories instead (see swf-fastmon watch).`,
  options: [
    ...CONFIG_OPTIONS,
    {
      name: 'replay',
      type: 'string',
      value: 'FILE',
      doc: 'handle the messages of a JSON-lines file instead of the broker, then exit',
    },
  ],
  // The agent reads every key: the scan keys serve agent.mode continuous.
  keys: keysExcept(),
};

export async function agentCommand(argv: readonly string[]): Promise<number> {
  const line = parseCommandLine(AGENT, argv);
  if (line.values.help) {
    process.stdout.write(commandHelp(AGENT));
    return 0;
  }
  const config = commandConfig(line);
  if (!config) return 0;
  if (config.agent.mode === 'continuous') {
    // The original agent's continuous mode, made real: watch directories instead of stf_ready.
    if (config.scan.watchDirs.length === 0) {
      throw new FastmonError(
        'CONFIG_INVALID',
        'agent.mode (FASTMON_MODE) continuous needs directories: set scan.watch_dirs (FASTMON_WATCH_DIRS or --watch-dir)',
      );
    }
    return runDirectories('watch', config.scan.watchDirs, config, true);
  }
  const replay = line.values.replay;
  if (typeof replay === 'string') return runReplay(config, requireReadableFile(replay, '--replay'));
  return runConsumer(config);
}

/** The agent's logger; with swf-monitor configured its records also go to AppLog (monitor.log_level). */
function agentLogger(config: Config): { logger: Logger; logShipper?: MonitorLogShipper } {
  const shipper = monitorLogShipper(config);
  const ship = shipper ? { shipper, level: config.monitor.logLevel } : undefined;
  return { logger: createLogger({ level: config.agent.logLevel, ship }), logShipper: shipper ?? undefined };
}

async function runReplay(config: Config, file: string): Promise<number> {
  const { logger, logShipper } = agentLogger(config);
  const stopping = onStopSignals({
    graceMs: stopBoundMs(config),
    notify: (text) => logger.warn(text),
  });
  const agent = new Agent({
    config,
    logger,
    consume: false,
    logShipper,
    input: 'replay',
    formatNotification: terminalNotifications(),
  });
  const started = Date.now();
  let messages = 0;
  try {
    await agent.start(stopping.signal);
    messages = await replayFile(agent, file, config.agent.maxInFlight * 2, stopping.signal);
    await agent.idle();
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  } finally {
    await agent.stop(stopping.name ? `received ${stopping.name}` : `replay of ${messages} messages finished`);
    stopping.dispose();
  }
  process.stdout.write(
    endOfJobSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()),
  );
  return stopping.name ? interruptedCode(stopping.name) : 0;
}

async function runConsumer(config: Config): Promise<number> {
  if (!config.broker.host) {
    throw new FastmonError(
      'CONFIG_INVALID',
      'broker.host (ACTIVEMQ_HOST) is empty: message mode needs a broker; set it, or use --replay FILE',
    );
  }
  const { logger, logShipper } = agentLogger(config);
  const stopping = onStopSignals({ graceMs: stopBoundMs(config), notify: (text) => logger.warn(text) });
  const agent = new Agent({ config, logger, logShipper, input: 'broker' });
  // Process-wide figures (RSS, heap, event-loop lag) belong to the process, so only the command adds them.
  collectDefaultMetrics({ register: agent.metrics.registry });
  const started = Date.now();
  try {
    await agent.start(stopping.signal);
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) {
      await agent.stop('start-up failed');
      stopping.dispose();
      throw err;
    }
  }
  const signal = await stopping.received;
  await agent.stop(`received ${signal}`);
  stopping.dispose();
  process.stdout.write(
    endOfJobSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()),
  );
  return 0;
}
