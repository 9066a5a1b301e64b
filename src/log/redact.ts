// Secret redaction: the one place that knows what a secret looks like in text and in objects.

const MASK = '[redacted]';

const secrets = new Set<string>();

/**
 * Registers a value (token, password) that must never reach a log line or an error message.
 * Short values are ignored: masking every "a" in the logs would help nobody.
 */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) secrets.add(value);
}

/** Credentials inside URLs (`scheme://user:pass@host`) are masked whatever they are. */
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+)(:[^/@\s]*)?@/gi;
/** `Authorization: Token abc…` or `Token abc` in free text. */
const TOKEN_HEADER = /\b(Token|Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/g;

export function redactText(text: string): string {
  let out = text.replace(URL_CREDENTIALS, `$1${MASK}@`).replace(TOKEN_HEADER, `$1 ${MASK}`);
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out;
}

/** Keys whose values are secrets whatever they contain. */
const SECRET_KEYS = /^(password|passcode|token|api_?token|authorization|secret)$/i;

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
