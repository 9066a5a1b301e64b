// `swf-fastmon agent`: the message-driven agent (broker or --replay), stopped by the shared signal handling.

import { FastmonError } from '../errors.js';
import { commandConfig } from './common.js';
import { requireReadableFile } from './inputs.js';
import { CONFIG_OPTIONS, type CommandSpec, commandHelp, keysExcept, parseCommandLine } from './options.js';
import { runConsumer, runDirectories, runReplay } from './run-agent.js';

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
    // The original agent's continuous mode, made real: the agent fed by watched directories instead of stf_ready.
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
  if (!config.broker.host) {
    throw new FastmonError(
      'CONFIG_INVALID',
      'broker.host (ACTIVEMQ_HOST) is empty: message mode needs a broker; set it, or use --replay FILE',
    );
  }
  return runConsumer(config);
}
