// What the commands share: the --config / --print-config handling of their configuration flags.

import { formatLine, formatOther, useColor } from '../client/line.js';
import { type Config, loadConfig, printableConfig } from '../config/load.js';
import type { CommandLine } from './options.js';

/** The resolved configuration, or null when --print-config printed it (the command then exits 0). */
export function commandConfig(line: CommandLine): Config | null {
  const configFile = line.values.config;
  const { config } = loadConfig({
    flags: line.config,
    configFile: typeof configFile === 'string' ? configFile : undefined,
  });
  if (line.values['print-config'] !== true) return config;
  process.stdout.write(`${JSON.stringify(printableConfig(config), null, 2)}\n`);
  return null;
}

/** How long a stop may take: the agent's drain bound, plus time to close the broker and say EXITED. */
export function stopBoundMs(config: Config): number {
  return config.agent.drainTimeoutS * 1000 + 5_000;
}

/**
 * Without a broker, notifications go to stdout: on a terminal as the client's aligned lines (a
 * person reads them), in a pipe as JSON lines (a program does). undefined: the JSON default.
 */
export function terminalNotifications(): ((message: Record<string, unknown>) => string) | undefined {
  if (process.stdout.isTTY !== true) return undefined;
  const color = useColor(process.stdout);
  return (m) => (m.msg_type === 'tf_file_registered' ? formatLine(m, { color }) : formatOther(m, { color }));
}
