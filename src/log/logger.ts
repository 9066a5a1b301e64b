// The pino logger: JSON on stderr (pretty on a TTY), every record passed through secret redaction.

import { createRequire } from 'node:module';
import { type DestinationStream, type Logger, pino } from 'pino';
import type { PrettyOptions, PrettyStream } from 'pino-pretty';
import type { MonitorLogShipper } from './monitor-logs.js';
import { redactText, redactValue } from './redact.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Where lines go; default stderr, so stdout stays free for notifications and summaries. */
  destination?: DestinationStream;
  /** Pretty-print; default: when stderr is a TTY. */
  pretty?: boolean;
  name?: string;
  /** Also hand records at or above `level` to swf-monitor's AppLog table (src/log/monitor-logs.ts). */
  ship?: { shipper: MonitorLogShipper; level: string };
}

/**
 * Terminal log lines: one line per record (the fields after the message), without the pid and
 * name every line repeats. JSON (no TTY) keeps every field.
 */
const PRETTY_OPTIONS = {
  colorize: true,
  translateTime: 'SYS:HH:MM:ss.l',
  singleLine: true,
  ignore: 'pid,hostname,name',
} as const;

/**
 * pino-pretty's stream writing to `destination` (a file descriptor or a stream). Loaded here, on
 * first use: an agent under supervisord logs JSON and never needs it (about 1 MB once loaded).
 */
export function prettyStream(destination: PrettyOptions['destination']): PrettyStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  return pretty({ ...PRETTY_OPTIONS, destination, sync: true });
}

export function createLogger(options: LoggerOptions): Logger {
  const usePretty = options.pretty ?? (options.destination === undefined && process.stderr.isTTY === true);
  const destination =
    options.destination ?? (usePretty ? prettyStream(2) : pino.destination({ fd: 2, sync: true }));
  const local = options.ship ? tee(destination, options.ship.shipper, options.ship.level) : destination;
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
    local,
  );
  // Values bound into child loggers (logger.child({ url })) are written with every line, but pino
  // runs no formatter over them (it resets `formatters.bindings` for children): redact them here.
  // Children are created from their parent by prototype, so every descendant inherits this `child`.
  const pinoChild = logger.child;
  logger.child = function redactingChild(this: Logger, bindings, options) {
    return pinoChild.call(this, redactValue(bindings), options);
  } as typeof logger.child;
  options.ship?.shipper.reportTo((message) => logger.warn({ code: 'MONITOR_LOGS_REFUSED' }, message));
  return logger;
}

/** pino's level labels in order; records at or above the shipping level also go to the shipper. */
const LABELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/**
 * The local destination, and the AppLog shipper for records at or above `level`. Our lines start
 * with `{"level":"<label>"` (formatters.level below), so the level is read without parsing; this
 * costs less than pino.multistream (BENCHMARKS.md, micro row "log call with AppLog shipping").
 */
function tee(destination: DestinationStream, shipper: MonitorLogShipper, level: string): DestinationStream {
  const shipped = new Set(LABELS.slice(Math.max(0, LABELS.indexOf(level))));
  const prefix = '{"level":"';
  return {
    write(line: string) {
      destination.write(line);
      const end = line.indexOf('"', prefix.length);
      if (line.startsWith(prefix) && shipped.has(line.slice(prefix.length, end))) shipper.write(line);
    },
  };
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
