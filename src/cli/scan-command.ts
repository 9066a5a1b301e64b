// `swf-fastmon scan DIR…` (one pass) and `swf-fastmon watch DIR…` (scan, then follow new files).

import { FastmonError } from '../errors.js';
import { commandConfig } from './common.js';
import { CONFIG_OPTIONS, type CommandSpec, commandHelp, keysExcept, parseCommandLine } from './options.js';
import { runDirectories } from './run-agent.js';

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
