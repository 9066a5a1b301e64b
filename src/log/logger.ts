// The pino logger: JSON on stderr (pretty on a TTY), every record passed through secret redaction.

import { type DestinationStream, type Logger, pino } from 'pino';
import pretty from 'pino-pretty';
import { redactText, redactValue } from './redact.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Where lines go; default stderr, so stdout stays free for notifications and summaries. */
  destination?: DestinationStream;
  /** Pretty-print; default: when stderr is a TTY. */
  pretty?: boolean;
  name?: string;
}

/**
 * Terminal log lines: one line per record (the fields after the message), without the pid and
 * name every line repeats. JSON (no TTY) keeps every field.
 */
export const PRETTY_OPTIONS = {
  colorize: true,
  translateTime: 'SYS:HH:MM:ss.l',
  singleLine: true,
  ignore: 'pid,hostname,name',
} as const;

export function createLogger(options: LoggerOptions): Logger {
  const usePretty = options.pretty ?? (options.destination === undefined && process.stderr.isTTY === true);
  const destination =
    options.destination ??
    (usePretty
      ? pretty({ ...PRETTY_OPTIONS, destination: 2, sync: true })
      : pino.destination({ fd: 2, sync: true }));
  const logger = pino(
    {
      level: options.level,
      name: options.name ?? 'swf-fastmon',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => redactValue(object),
      },
      hooks: {
        // Message strings are redacted too: a URL with credentials can hide in any text.
        logMethod(args, method) {
          const redacted = args.map((a) => (typeof a === 'string' ? redactText(a) : a)) as typeof args;
          method.apply(this, redacted);
        },
      },
    },
    destination,
  );
  // Values bound into child loggers (logger.child({ url })) are written with every line, but pino
  // runs no formatter over them (it resets `formatters.bindings` for children): redact them here.
  // Children are created from their parent by prototype, so every descendant inherits this `child`.
  const pinoChild = logger.child;
  logger.child = function redactingChild(this: Logger, bindings, options) {
    return pinoChild.call(this, redactValue(bindings), options);
  } as typeof logger.child;
  return logger;
}

function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  const details = (err as { details?: unknown }).details;
  if (details !== undefined) out.details = details;
  if (err.stack && !('details' in err)) out.stack = err.stack;
  if (err.cause !== undefined) out.cause = serializeError(err.cause);
  return out;
}

/** A logger that drops everything, for library use and tests that assert on other outputs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
