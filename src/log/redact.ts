// Secret redaction: the one place that knows what a secret looks like in text and in objects.

const MASK = '[redacted]';

/**
 * Registered secret values shorter than this are not searched for in free text. A short value
 * (the documented default broker password `admin`) is also an ordinary word: masking it everywhere
 * turned `/tmp/fmadmin/admin-data` into `/tmp/fm[redacted]/[redacted]-data` and the user name
 * `admin` into `[redacted]`, while protecting nothing (it is the default). Such a value is still
 * masked wherever its role is visible: the value of a secret key, a `password=`/`passcode:` pair,
 * URL credentials, an Authorization header. docs/operations.md says so.
 */
export const MIN_SECRET_LENGTH = 8;

const secrets = new Set<string>();

/**
 * Registers a value (token, password) that must never reach a log line or an error message.
 * Call before creating loggers that bind values (child bindings are serialized once, at creation).
 */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= MIN_SECRET_LENGTH) secrets.add(value);
}

/** Credentials inside URLs (`scheme://user:pass@host`) are masked whatever they are. */
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+)(:[^/@\s]*)?@/gi;
/** `Authorization: Token abc…` or `Token abc` in free text. */
const TOKEN_HEADER = /\b(Token|Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/g;
/** `password=x`, `passcode:x`, `"token": "x"` in free text (a STOMP frame, a query string, JSON). */
const SECRET_PAIR = /\b(password|passcode|passwd|api_?token|token|secret)("?\s*[=:]\s*"?)([^\s"&,;}]+)/gi;

export function redactText(text: string): string {
  let out = text
    .replace(URL_CREDENTIALS, `$1${MASK}@`)
    .replace(TOKEN_HEADER, `$1 ${MASK}`)
    .replace(SECRET_PAIR, (_all, key: string, sep: string, value: string) =>
      value === MASK ? `${key}${sep}${value}` : `${key}${sep}${MASK}`,
    );
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out;
}

/** Keys whose values are secrets whatever they contain. */
const SECRET_KEYS = /^(password|passcode|passwd|token|api_?token|authorization|secret)$/i;

/** Deep copy of a plain value with secret keys masked and every string passed through redactText. */
export function redactValue<T>(value: T): T {
  return redactInner(value, 0) as T;
}

function redactInner(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (Array.isArray(value)) return value.map((v) => redactInner(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] =
      SECRET_KEYS.test(key) && v !== undefined && v !== null && v !== '' ? MASK : redactInner(v, depth + 1);
  }
  return out;
}

export const REDACTED = MASK;
