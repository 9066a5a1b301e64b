// `swf-fastmon agent`: the message-driven agent (broker or --replay), with clean shutdown on signals.

import { collectDefaultMetrics } from 'prom-client';
import { Agent } from '../agent/agent.js';
import { replayFile } from '../agent/replay.js';
import { formatSummary } from '../agent/summary.js';
import { type ExtraFlag, parseArgs } from '../config/args.js';
import type { Config } from '../config/load.js';
import { FastmonError, isFastmonError } from '../errors.js';
import { createLogger, type Logger } from '../log/logger.js';
import { type MonitorLogShipper, monitorLogShipper } from '../log/monitor-logs.js';
import { commandConfig } from './common.js';
import { configHelp } from './help.js';
import { runDirectories } from './scan-command.js';

export const AGENT_FLAGS: readonly ExtraFlag[] = [
  {
    name: 'config',
    takesValue: true,
    doc: 'TOML file with [broker], [monitor], [agent], [sampling] sections',
  },
  {
    name: 'print-config',
    takesValue: false,
    doc: 'print the resolved configuration (secrets redacted) and exit',
  },
  {
    name: 'replay',
    takesValue: true,
    doc: 'handle the messages of a JSON-lines file instead of the broker, then exit',
  },
  { name: 'help', alias: 'h', takesValue: false, doc: 'this help' },
];

export async function agentCommand(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, AGENT_FLAGS);
  if (args.options.get('help')) {
    process.stdout.write(agentHelp());
    return 0;
  }
  if (args.positionals.length > 0)
    throw new FastmonError('CONFIG_INVALID', `unexpected argument ${args.positionals[0]}`);
  const config = commandConfig(args);
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
  const replay = args.options.get('replay');
  return typeof replay === 'string' ? runReplay(config, replay) : runConsumer(config);
}

/** The agent's logger; with swf-monitor configured its records also go to AppLog (monitor.log_level). */
function agentLogger(config: Config): { logger: Logger; logShipper?: MonitorLogShipper } {
  const shipper = monitorLogShipper(config);
  const ship = shipper ? { shipper, level: config.monitor.logLevel } : undefined;
  return { logger: createLogger({ level: config.agent.logLevel, ship }), logShipper: shipper ?? undefined };
}

async function runReplay(config: Config, file: string): Promise<number> {
  const { logger, logShipper } = agentLogger(config);
  const agent = new Agent({ config, logger, consume: false, logShipper });
  const started = Date.now();
  await agent.start();
  let messages = 0;
  try {
    messages = await replayFile(agent, file, config.agent.maxInFlight * 2);
    await agent.idle();
  } finally {
    await agent.stop(`replay of ${messages} messages finished`);
  }
  process.stdout.write(formatSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()));
  return 0;
}

async function runConsumer(config: Config): Promise<number> {
  if (!config.broker.host) {
    throw new FastmonError(
      'CONFIG_INVALID',
      'broker.host (ACTIVEMQ_HOST) is empty: message mode needs a broker; set it, or use --replay FILE',
    );
  }
  const { logger, logShipper } = agentLogger(config);
  const agent = new Agent({ config, logger, logShipper });
  // Process-wide figures (RSS, heap, event-loop lag) belong to the process, so only the command adds them.
  collectDefaultMetrics({ register: agent.metrics.registry });
  const started = Date.now();
  const startup = new AbortController();
  let received: string | null = null;
  const stopped = new Promise<string>((resolve) => {
    // SIGQUIT is supervisord's stopsignal for testbed agents.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) {
      process.on(signal, () => {
        if (received) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        received = signal;
        startup.abort();
        resolve(signal);
      });
    }
  });
  try {
    await agent.start(startup.signal);
  } catch (err) {
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  }
  const signal = await stopped;
  await agent.stop(`received ${signal}`);
  process.stdout.write(formatSummary(agent.agentName, Date.now() - started, agent.totals, agent.runs.all()));
  return 0;
}

function agentHelp(): string {
  return `Usage: swf-fastmon agent [options]

Consumes stf_ready and run lifecycle messages, samples TF ranges from each STF in a worker
pool, records them in swf-monitor (or the local catalog) and broadcasts tf_file_registered.

Options:
${AGENT_FLAGS.map((f) => `  --${f.name}${f.takesValue ? ' VALUE' : ''}`.padEnd(30) + f.doc).join('\n')}

Configuration (flag > environment > --config file > default):
${configHelp()}`;
}
