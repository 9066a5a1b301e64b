// Defensive reads of message fields: any field may be missing, null or of the wrong type, and none may crash the client.

/** A parsed JSON body as it arrives from the broker; nothing about its shape is trusted. */
export type ClientMessage = Record<string, unknown>;

/** A finite number, or null for anything else (including numeric strings: senders that quote numbers are wrong). */
export function num(m: ClientMessage, key: string): number | null {
  const v = m[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** A non-negative finite number (sizes, counts), or null. */
export function count(m: ClientMessage, key: string): number | null {
  const v = num(m, key);
  return v !== null && v >= 0 ? v : null;
}

/** Strings as they are, finite numbers as text (daqsim sends run_id as an int), null otherwise. */
export function str(m: ClientMessage, key: string): string | null {
  const v = m[key];
  if (typeof v === 'string') return v === '' ? null : v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

export function obj(m: ClientMessage, key: string): ClientMessage | null {
  const v = m[key];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as ClientMessage) : null;
}

/** `run_id`, or `run_number` from the original agent (docs/testbed-interface.md, "tf_file_registered"). */
export function runOf(m: ClientMessage): string | null {
  return str(m, 'run_id') ?? str(m, 'run_number');
}

// C0 and C1 controls and DEL: a message field must never move the cursor or change colours on a shift
// crew's terminal, whoever sent it.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Text safe to print on a terminal: controls replaced by '?', capped at `max` characters. */
export function safe(value: string | null, max = 200): string {
  if (value === null) return '-';
  const clean = value.replace(CONTROL, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
