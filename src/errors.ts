// The catalogue of every error swf-fastmon raises: one code per failure an operator can act on.

/**
 * Codes are stable strings: they appear in logs (`err.code`), in metrics labels and in the
 * worker results that cross the thread boundary, where an Error instance would lose its class.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  CONFIG_FILE_UNREADABLE: 'CONFIG_FILE_UNREADABLE',
  MESSAGE_NOT_JSON: 'MESSAGE_NOT_JSON',
  MESSAGE_INVALID: 'MESSAGE_INVALID',
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  MESSAGE_HEADERS_TOO_LARGE: 'MESSAGE_HEADERS_TOO_LARGE',
  PATH_OUTSIDE_ROOTS: 'PATH_OUTSIDE_ROOTS',
  PATH_INVALID: 'PATH_INVALID',
  STF_NOT_FOUND: 'STF_NOT_FOUND',
  STF_UNREADABLE: 'STF_UNREADABLE',
  STF_EMPTY: 'STF_EMPTY',
  STF_HEADER_CORRUPT: 'STF_HEADER_CORRUPT',
  STF_HEADER_TOO_LARGE: 'STF_HEADER_TOO_LARGE',
  STF_TRUNCATED: 'STF_TRUNCATED',
  STF_BAD_MAGIC: 'STF_BAD_MAGIC',
  STF_UNSUPPORTED_VERSION: 'STF_UNSUPPORTED_VERSION',
  STF_INDEX_OUT_OF_BOUNDS: 'STF_INDEX_OUT_OF_BOUNDS',
  STF_TF_OVERLAP: 'STF_TF_OVERLAP',
  STF_CHECKSUM_MISMATCH: 'STF_CHECKSUM_MISMATCH',
  EXTRACTION_FAILED: 'EXTRACTION_FAILED',
  RUN_UNKNOWN: 'RUN_UNKNOWN',
  WORKER_FAILED: 'WORKER_FAILED',
  MONITOR_UNAVAILABLE: 'MONITOR_UNAVAILABLE',
  MONITOR_REJECTED: 'MONITOR_REJECTED',
  MONITOR_REDIRECT: 'MONITOR_REDIRECT',
  MONITOR_BAD_RESPONSE: 'MONITOR_BAD_RESPONSE',
  REGISTRATION_CONFLICT: 'REGISTRATION_CONFLICT',
  // swf-monitor's PostgreSQL written directly (issue 14): its tables differ from what fastmon writes.
  MONITOR_DB_SCHEMA: 'MONITOR_DB_SCHEMA',
  CATALOG_WRITE_FAILED: 'CATALOG_WRITE_FAILED',
  LEDGER_WRITE_FAILED: 'LEDGER_WRITE_FAILED',
  LEDGER_INVALID: 'LEDGER_INVALID',
  OUTBOX_WRITE_FAILED: 'OUTBOX_WRITE_FAILED',
  OUTBOX_FULL: 'OUTBOX_FULL',
  STORE_OPEN_FAILED: 'STORE_OPEN_FAILED',
  BROKER_UNAVAILABLE: 'BROKER_UNAVAILABLE',
  BROKER_ERROR: 'BROKER_ERROR',
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  SSE_UNAVAILABLE: 'SSE_UNAVAILABLE',
  CLIENT_SOURCE_FAILED: 'CLIENT_SOURCE_FAILED',
  SHUTDOWN: 'SHUTDOWN',
  // A file or directory named on the command line (or in the configuration) that cannot be used:
  // the user's mistake, reported before anything starts (exit 2).
  INPUT_UNREADABLE: 'INPUT_UNREADABLE',
  OUTPUT_UNWRITABLE: 'OUTPUT_UNWRITABLE',
  // Interop (issue 13): conditions logged with a code for the operator, not thrown.
  RUN_INCOMPLETE: 'RUN_INCOMPLETE',
  STF_AFTER_RUN_END: 'STF_AFTER_RUN_END',
  MONITOR_LOGS_REFUSED: 'MONITOR_LOGS_REFUSED',
  METRICS_PORT_IN_USE: 'METRICS_PORT_IN_USE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Plain, structured-clone-safe form of an error, as workers return it. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  /** Extra facts an operator needs (file, offset, HTTP status, …). Never secrets. */
  details?: Record<string, unknown>;
}

export class FastmonError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.name = 'FastmonError';
    this.code = code;
    this.details = details;
  }

  toInfo(): ErrorInfo {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  static fromInfo(info: ErrorInfo): FastmonError {
    return new FastmonError(info.code, info.message, info.details);
  }
}

export function isFastmonError(err: unknown, code?: ErrorCode): err is FastmonError {
  return err instanceof FastmonError && (code === undefined || err.code === code);
}

/** Codes that mean the command line or configuration is wrong: one line on stderr, exit 2. */
export const USAGE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CONFIG_INVALID',
  'CONFIG_FILE_UNREADABLE',
  'INPUT_UNREADABLE',
  'OUTPUT_UNWRITABLE',
]);

/** The message of any thrown value, for wrapping foreign errors. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
