// Command-line parsing: `--flag value`, `--flag=value`, `--flag` / `--no-flag` for booleans.

import { FastmonError } from '../errors.js';
import { KEYS, type KeySpec } from './keys.js';

export interface ParsedArgs {
  /** Configuration values by key, as strings (lists as arrays), still to be validated. */
  config: Map<string, string | string[]>;
  /** Flags that are not configuration keys (`--replay`, `--print-config`, …). */
  options: Map<string, string | boolean>;
  positionals: string[];
}

export interface ExtraFlag {
  name: string;
  /** Takes a value (`--replay FILE`) or is a switch (`--print-config`). */
  takesValue: boolean;
  alias?: string;
  doc: string;
}

const FLAG_TO_KEY: ReadonlyMap<string, KeySpec> = new Map(
  KEYS.filter((k) => k.flag !== undefined).map((k) => [k.flag as string, k]),
);

export function parseArgs(argv: readonly string[], extra: readonly ExtraFlag[] = []): ParsedArgs {
  const extraByName = new Map<string, ExtraFlag>();
  for (const e of extra) {
    extraByName.set(e.name, e);
    if (e.alias) extraByName.set(e.alias, e);
  }
  const result: ParsedArgs = { config: new Map(), options: new Map(), positionals: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      result.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      result.positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const rawName = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    const next = (): string => {
      if (inline !== undefined) return inline;
      const value = argv[i + 1];
      if (value === undefined) throw usage(`option --${rawName} needs a value`);
      i++;
      return value;
    };

    const extraFlag = extraByName.get(rawName);
    if (extraFlag) {
      result.options.set(extraFlag.name, extraFlag.takesValue ? next() : true);
      continue;
    }
    const negated = rawName.startsWith('no-') ? FLAG_TO_KEY.get(rawName.slice(3)) : undefined;
    if (negated?.type === 'bool') {
      if (inline !== undefined) throw usage(`option --${rawName} takes no value`);
      result.config.set(negated.key, 'false');
      continue;
    }
    const spec = FLAG_TO_KEY.get(rawName);
    if (!spec) throw usage(`unknown option --${rawName}`);
    if (spec.type === 'bool') {
      result.config.set(spec.key, inline ?? 'true');
    } else if (spec.type === 'list') {
      const previous = result.config.get(spec.key);
      result.config.set(spec.key, [...(Array.isArray(previous) ? previous : []), next()]);
    } else {
      result.config.set(spec.key, next());
    }
  }
  return result;
}

function usage(message: string): FastmonError {
  return new FastmonError('CONFIG_INVALID', `${message} (see --help)`);
}
