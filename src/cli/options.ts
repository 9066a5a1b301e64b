// The one command-line shell: each command declares its options and the configuration keys it offers; node:util parseArgs parses.

import { parseArgs } from 'node:util';
import { KEYS, type KeySpec } from '../config/keys.js';
import { FastmonError } from '../errors.js';
import { shownDefault } from './help.js';

export interface OptionSpec {
  name: string;
  type: 'string' | 'boolean';
  short?: string;
  /** Repeatable (`--run 1 --run 2`); the values come as a list. */
  multiple?: boolean;
  /** Placeholder in the help, e.g. FILE. */
  value?: string;
  doc: string;
}

export interface CommandSpec {
  /** As typed after `swf-fastmon`, e.g. `scan`. */
  name: string;
  /** The usage line after `Usage: `. */
  usage: string;
  /** What the command does, a paragraph. */
  about: string;
  /** Options that are not configuration keys (`--replay`, `--count`, …). `--help` is added. */
  options: readonly OptionSpec[];
  /** Configuration keys this command reads, offered as flags and listed in its help. */
  keys: readonly KeySpec[];
  /** Whether the command takes arguments (`scan DIR…`). */
  positionals?: boolean;
}

export interface CommandLine {
  /** The command's own options by name; absent when not given. */
  values: Record<string, string | boolean | string[] | undefined>;
  /** Configuration values by key, still strings, for loadConfig's flag layer. */
  config: Map<string, string | string[]>;
  positionals: string[];
}

export const HELP: OptionSpec = { name: 'help', short: 'h', type: 'boolean', doc: 'this help' };

/** What every command with a configuration offers besides its keys. */
export const CONFIG_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'config',
    type: 'string',
    value: 'FILE',
    doc: 'TOML file with [broker], [monitor], [agent], [sampling], [scan] sections',
  },
  {
    name: 'print-config',
    type: 'boolean',
    doc: 'print the resolved configuration (secrets redacted) and exit',
  },
];

/** Configuration keys by name, in the table's order (a command's help lists them in that order). */
export function keysNamed(...names: string[]): KeySpec[] {
  const wanted = new Set(names);
  const found = KEYS.filter((k) => wanted.has(k.key));
  if (found.length !== wanted.size) {
    const missing = names.filter((n) => !found.some((k) => k.key === n));
    throw new Error(`unknown configuration keys ${missing.join(', ')}`);
  }
  return found;
}

/** Every configuration key except those named. */
export function keysExcept(...names: string[]): KeySpec[] {
  const unwanted = new Set(names);
  return KEYS.filter((k) => !unwanted.has(k.key));
}

type ParseOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

interface Flag {
  /** A configuration key, or the command's own option. */
  key?: KeySpec;
  negated?: boolean;
  own?: OptionSpec;
  takesValue: boolean;
}

/** The flags of a command, by long name; a clash is a programming error caught by a test. */
export function commandFlags(spec: CommandSpec): Map<string, Flag> {
  const flags = new Map<string, Flag>();
  const add = (name: string, flag: Flag) => {
    if (flags.has(name)) throw new Error(`${spec.name}: option --${name} is declared twice`);
    flags.set(name, flag);
  };
  for (const own of [...spec.options, HELP]) add(own.name, { own, takesValue: own.type === 'string' });
  for (const key of spec.keys) {
    if (!key.flag) continue;
    add(key.flag, { key, takesValue: key.type !== 'bool' });
    if (key.type === 'bool') add(`no-${key.flag}`, { key, negated: true, takesValue: false });
  }
  return flags;
}

export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): CommandLine {
  const flags = commandFlags(spec);
  const options: ParseOptions = {};
  const shortToLong = new Map<string, string>();
  for (const [name, flag] of flags) {
    const type = flag.takesValue ? 'string' : 'boolean';
    const multiple = flag.own?.multiple === true || flag.key?.type === 'list';
    options[name] = flag.own?.short ? { type, multiple, short: flag.own.short } : { type, multiple };
    if (flag.own?.short) shortToLong.set(flag.own.short, name);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joinValues(argv, flags, shortToLong),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    // parseArgs' own text, first sentence only: its hint about `--` does not help here.
    const text = err instanceof Error ? (err.message.split(/\.(\s|$)/)[0] ?? err.message) : String(err);
    throw usageError(spec, text.replace(/^Option /, 'option ').replace(/^Unknown /, 'unknown '));
  }
  const line: CommandLine = { values: {}, config: new Map(), positionals: parsed.positionals };
  if (!spec.positionals && line.positionals.length > 0 && parsed.values.help !== true) {
    throw usageError(spec, `unexpected argument ${JSON.stringify(line.positionals[0])}`);
  }
  for (const [name, value] of Object.entries(parsed.values)) {
    const flag = flags.get(name) as Flag;
    if (flag.own) line.values[name] = value as string | boolean | string[];
    else if (flag.key?.type === 'bool') line.config.set(flag.key.key, flag.negated ? 'false' : 'true');
    else if (flag.key) line.config.set(flag.key.key, value as string | string[]);
  }
  return line;
}

/**
 * `--http-port -1` is refused by parseArgs as ambiguous (a value that looks like an option); the
 * configuration has such values (-1 turns the HTTP server off), so an option known to take a value
 * takes the next argument whatever it looks like, as `--http-port=-1` would.
 */
function joinValues(
  argv: readonly string[],
  flags: Map<string, Flag>,
  shortToLong: Map<string, string>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const long = arg.startsWith('--')
      ? arg.slice(2)
      : arg.length === 2
        ? shortToLong.get(arg.slice(1))
        : undefined;
    const next = argv[i + 1];
    if (long !== undefined && !long.includes('=') && flags.get(long)?.takesValue && next !== undefined) {
      out.push(`--${long}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

export function usageError(spec: CommandSpec, message: string): FastmonError {
  return new FastmonError('CONFIG_INVALID', `${spec.name}: ${message} (see swf-fastmon ${spec.name} --help)`);
}

/** The command's help: usage, what it does, its own options, then the configuration keys it reads. */
export function commandHelp(spec: CommandSpec): string {
  const column = 34;
  const own = [...spec.options, HELP].map((o) => {
    const names = `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return `  ${names.padEnd(column)}${o.doc}`;
  });
  const keys = spec.keys
    .filter((k) => k.flag)
    .map((k) => {
      const flag = k.type === 'bool' ? `--[no-]${k.flag}` : `--${k.flag} VALUE`;
      const env = k.env ? ` [${k.env}]` : '';
      return `  ${flag.padEnd(column)}${k.doc} Default: ${shownDefault(k)}.${env}`;
    });
  const config =
    keys.length > 0
      ? `\nConfiguration (flag > environment > --config file > default; docs/configuration.md):\n${keys.join('\n')}\n`
      : '';
  return `Usage: ${spec.usage}\n\n${spec.about}\n\nOptions:\n${own.join('\n')}\n${config}`;
}
