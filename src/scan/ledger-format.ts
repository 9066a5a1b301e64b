// The ledger's line format: outcomes, separators and the escaping of keys on disk.

import { constants } from 'node:fs';
import type { LedgerOutcome } from './ledger.js';

export const HEADER = '#swf-fastmon-ledger v1\n';
export const OUTCOMES: readonly LedgerOutcome[] = ['sampled', 'skipped', 'failed'];
export const OUTCOME_BYTES = OUTCOMES.map((name) => Buffer.from(name, 'latin1'));
export const FORGET = 'forget';
export const FORGET_BYTES = Buffer.from(FORGET, 'latin1');
/** Outcome code of a forgotten entry; live entries hold 1 + the index in OUTCOMES. */
export const DEAD = 0;
export const TAB = 0x09;
export const NEWLINE = 0x0a;
export const READ_CHUNK = 4 << 20;
export const SNAPSHOT_CHUNK = 1 << 20;
/** Room for everything on a line but the key: outcome, a safe integer, any printed double, tabs. */
export const MAX_VALUE_BYTES = 64;
export const REWRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;

// ---------------------------------------------------------------------------------------------------------
// Keys on disk: the last field of a line, so tabs stay as they are. Backslash, LF and CR are escaped, and
// so are lone surrogates, which UTF-8 cannot carry (a walker may hand over any JS string).

/** In unicode mode a surrogate range matches only a surrogate that is not half of a pair. */
export const NEEDS_ESCAPE = /[\\\n\r\ud800-\udfff]/gu;
export const ESCAPED = /\\(?:u([0-9a-f]{4})|([\\nr]))/g;
export const UNESCAPED: Record<string, string> = { '\\': '\\', n: '\n', r: '\r' };

/** The canonical on-disk form of a key; distinct keys always give distinct forms. */
export function escapeKey(key: string): string {
  return key.replace(NEEDS_ESCAPE, escapeUnit);
}

function escapeUnit(unit: string): string {
  if (unit === '\\') return '\\\\';
  if (unit === '\n') return '\\n';
  if (unit === '\r') return '\\r';
  return `\\u${unit.charCodeAt(0).toString(16)}`;
}

export function unescapeKey(canonical: string): string {
  if (!canonical.includes('\\')) return canonical;
  return canonical.replace(ESCAPED, (_, hex: string | undefined, char: string | undefined) =>
    hex === undefined ? UNESCAPED[char!]! : String.fromCharCode(Number.parseInt(hex, 16)),
  );
}
