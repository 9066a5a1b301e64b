// The catalogue of every error swf-fastmon raises: one code per failure an operator can act on.

/**
 * What the catalogue says about a code. `retryable`: a later attempt at the same work can succeed
 * (a service or a disk that comes back); the agent retries an stf_ready that failed with one of these
 * and leaves the rest acknowledged. `inputFault`: the input itself is at fault, so the same bytes fail
 * the same way every time; scan and watch record such a file in the ledger and do not read it again.
 * A code is never both; one that is neither (a refusal by swf-monitor, an extraction that could not
 * write) is acknowledged, and a scan tries the file again on its next pass.
 */
export interface CodeInfo {
  retryable: boolean;
  inputFault: boolean;
}

const NO: CodeInfo = { retryable: false, inputFault: false };
const RETRYABLE: CodeInfo = { retryable: true, inputFault: false };
const INPUT: CodeInfo = { retryable: false, inputFault: true };

/**
 * Codes are stable strings: they appear in logs (`err.code`), in metrics labels and in the
 * worker results that cross the thread boundary, where an Error instance would lose its class.
 * The table in docs/operations.md ("Error codes") lists each with its meaning and these columns.
 */
const CATALOGUE = {
  CONFIG_INVALID: NO,
  CONFIG_FILE_UNREADABLE: NO,
  MESSAGE_NOT_JSON: NO,
  MESSAGE_INVALID: NO,
  MESSAGE_TOO_LARGE: NO,
  MESSAGE_HEADERS_TOO_LARGE: NO,
  PATH_OUTSIDE_ROOTS: INPUT,
  PATH_INVALID: INPUT,
  STF_NOT_FOUND: INPUT,
  STF_UNREADABLE: INPUT,
  STF_EMPTY: INPUT,
  STF_HEADER_CORRUPT: INPUT,
  STF_HEADER_TOO_LARGE: INPUT,
  STF_TRUNCATED: INPUT,
  STF_BAD_MAGIC: INPUT,
  STF_UNSUPPORTED_VERSION: INPUT,
  STF_INDEX_OUT_OF_BOUNDS: INPUT,
  STF_TF_OVERLAP: INPUT,
  STF_CHECKSUM_MISMATCH: INPUT,
  EXTRACTION_FAILED: NO,
  RUN_UNKNOWN: INPUT,
  WORKER_FAILED: RETRYABLE,
  MONITOR_UNAVAILABLE: RETRYABLE,
  // A refusal: retried only a few times, for an STF swf-monitor does not know yet (agent.ts).
  MONITOR_REJECTED: NO,
  MONITOR_REDIRECT: NO,
  MONITOR_BAD_RESPONSE: NO,
  REGISTRATION_CONFLICT: NO,
  // swf-monitor's PostgreSQL written directly (issue 14): its tables differ from what fastmon writes.
  MONITOR_DB_SCHEMA: NO,
  CATALOG_WRITE_FAILED: RETRYABLE,
  LEDGER_WRITE_FAILED: RETRYABLE,
  LEDGER_INVALID: NO,
  OUTBOX_WRITE_FAILED: RETRYABLE,
  OUTBOX_FULL: RETRYABLE,
  STORE_OPEN_FAILED: NO,
  BROKER_UNAVAILABLE: RETRYABLE,
  PUBLISH_FAILED: RETRYABLE,
  SSE_UNAVAILABLE: RETRYABLE,
  CLIENT_SOURCE_FAILED: NO,
  // The agent is stopping: work cut short (a sample refused by a closed outbox or store) is
  // retryable, so its stf_ready is left unacknowledged for the next agent. The agent unsubscribes
  // before it closes the outbox, so an acknowledgement would not reach the broker anyway
  // (test/integration/shutdown-redelivery.test.ts); the catalogue says what the code means.
  SHUTDOWN: RETRYABLE,
  // A file or directory named on the command line (or in the configuration) that cannot be used:
  // the user's mistake, reported before anything starts (exit 2).
  INPUT_UNREADABLE: NO,
  OUTPUT_UNWRITABLE: NO,
  // Interop (issue 13): conditions logged with a code for the operator, not thrown.
  RUN_INCOMPLETE: NO,
  STF_AFTER_RUN_END: NO,
  MONITOR_LOGS_REFUSED: NO,
  METRICS_PORT_IN_USE: NO,
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof CATALOGUE;

/** Every code, by name (metrics labels are drawn from these). */
export const ErrorCodes = Object.fromEntries(Object.keys(CATALOGUE).map((code) => [code, code])) as {
  readonly [C in ErrorCode]: C;
};

/** The catalogue's entry for a code; null for a string that is not one of ours (an errno, a typo). */
export function codeInfo(code: string): CodeInfo | null {
  return Object.hasOwn(CATALOGUE, code) ? CATALOGUE[code as ErrorCode] : null;
}

/** Whether a later attempt can cure a failure with this code; false for codes not in the catalogue. */
export function isRetryable(code: string): boolean {
  return codeInfo(code)?.retryable === true;
}

/** Whether the input itself is at fault (the same bytes always fail); false for codes not in the catalogue. */
export function isInputFault(code: string): boolean {
  return codeInfo(code)?.inputFault === true;
}

/**
 * Why scan and watch pass over a directory entry (walk.ts), each under the catalogue code an operator
 * filters on; the reason stays in the log line beside the code as the detail (the errno, or what is
 * wrong with the entry). They are the worker's codes for the same faults: a zero-byte file is
 * STF_EMPTY whether the walk or the STF reader finds it.
 */
export const SKIP_REASONS = {
  EACCES: 'STF_UNREADABLE',
  ENOENT: 'STF_NOT_FOUND',
  ENOTDIR: 'PATH_INVALID',
  ELOOP: 'PATH_INVALID',
  NOT_UTF8: 'PATH_INVALID',
  ZERO_BYTE: 'STF_EMPTY',
  NOT_A_FILE: 'PATH_INVALID',
  ERROR: 'STF_UNREADABLE',
} as const satisfies Record<string, ErrorCode>;

export type SkipReason = keyof typeof SKIP_REASONS;

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
