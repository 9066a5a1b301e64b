// What the commands share: the --config / --print-config handling of their configuration flags.

import type { ParsedArgs } from '../config/args.js';
import { type Config, loadConfig, printableConfig } from '../config/load.js';

/** The resolved configuration, or null when --print-config printed it (the command then exits 0). */
export function commandConfig(args: ParsedArgs): Config | null {
  const configFile = args.options.get('config');
  const { config } = loadConfig({
    flags: args.config,
    configFile: typeof configFile === 'string' ? configFile : undefined,
  });
  if (!args.options.get('print-config')) return config;
  process.stdout.write(`${JSON.stringify(printableConfig(config), null, 2)}\n`);
  return null;
}
