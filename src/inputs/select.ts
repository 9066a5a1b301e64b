// Which files a scan takes: name patterns, the lookback window and the shard an agent owns. Pure.

import { createHash } from 'node:crypto';
import { FastmonError } from '../errors.js';

/** The original agent's `file_patterns`; globs are case-sensitive, hence both spellings. */
export const DEFAULT_PATTERNS: readonly string[] = ['*.stf', '*.STF'];

export interface Shard {
  /** 0-based shard this agent owns. */
  index: number;
  /** Number of agents sharing the tree. */
  count: number;
}

/**
 * Shell-style globs on a base name: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`; no backslash escapes
 * (write `[*]` for a literal `*`). As in the shell, a leading `.` is only matched by a pattern that
 * starts with `.`: hidden names are in-progress writes by convention (rsync's `.name.XXXXXX`, the
 * testbed's `.swf.….stf.tmp-…`), never finished STFs.
 */
export function compilePatterns(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) throw new FastmonError('CONFIG_INVALID', 'file patterns: the list is empty');
  const sources = patterns.map((pattern) => {
    if (pattern === '' || pattern.includes('/')) {
      throw new FastmonError(
        'CONFIG_INVALID',
        `file pattern "${pattern}": must be a non-empty base-name glob`,
      );
    }
    return globSource(pattern);
  });
  const regex = new RegExp(`^(?:${sources.join('|')})$`, 'u');
  return (name) => regex.test(name);
}

/** `i/N` → `{ index: i, count: N }`, validated once here so the walk works with trusted values. */
export function parseShard(text: string): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!match) throw shardError(text, 'expected i/N, e.g. 0/4');
  const index = Number(match[1]);
  const count = Number(match[2]);
  // Beyond 2^32 shards, some would never receive a file: the hash has 32 bits.
  if (count < 1 || count > 2 ** 32) throw shardError(text, 'N must be between 1 and 4294967296');
  if (index >= count) throw shardError(text, `i must be below N (0 ≤ i < ${count})`);
  return { index, count };
}

/**
 * Whether a file belongs to this agent's shard: the first 4 bytes (big-endian) of the SHA-256 of
 * the path relative to the scanned root, modulo N. Relative, so that the same file lands in the same
 * shard on every machine whatever the mount point (`/data` here, `/mnt/daq` there); hashed as UTF-8
 * because the walk only yields names that are valid UTF-8, whose UTF-8 bytes are exactly the bytes
 * on disk, so any tool can reproduce the assignment (`printf %s run1/x.stf | sha256sum`). The path
 * uses `/` and has no leading `./`, as `WalkEntry.relative` does; every agent must scan from the same
 * top directory. SHA-256 rather than a faster hash: it is the same on every platform and version,
 * and a few microseconds per file is nothing beside the stat.
 */
export function inShard(relativePath: string, shard: Shard): boolean {
  if (shard.count === 1) return true;
  const hash = createHash('sha256').update(relativePath, 'utf8').digest().readUInt32BE(0);
  return hash % shard.count === shard.index;
}

/**
 * The original agent's `lookback_time`: only files touched in the last `lookbackMinutes`; 0 (or less)
 * means no age cut. Files from the future (clock skew between the DAQ host and this one) are kept.
 * The original compared `st_ctime`; the walk reports the modification time, which a copy that
 * preserves times (`rsync -t`, `cp -p`) keeps, so pass whichever time the caller means.
 */
export function withinLookback(mtimeMs: number, nowMs: number, lookbackMinutes: number): boolean {
  if (!(lookbackMinutes > 0)) return true;
  return mtimeMs >= nowMs - lookbackMinutes * 60_000;
}

function shardError(text: string, problem: string): FastmonError {
  return new FastmonError('CONFIG_INVALID', `shard "${text}": ${problem}`, { shard: text });
}

function globSource(pattern: string): string {
  const chars = Array.from(pattern); // code points, so `?` and sets handle astral characters
  let out = pattern.startsWith('.') ? '' : '(?!\\.)';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as string;
    if (c === '*') {
      out += '[\\s\\S]*';
    } else if (c === '?') {
      out += '[\\s\\S]';
    } else if (c === '[') {
      const set = bracketSource(chars, i);
      out += set ? set.source : '\\[';
      if (set) i = set.end;
    } else {
      out += escapeChar(c);
    }
  }
  return out;
}

/** A `[...]` set starting at `start`, or null when it is never closed (then `[` is literal, as in fnmatch). */
function bracketSource(chars: string[], start: number): { source: string; end: number } | null {
  let i = start + 1;
  const negate = chars[i] === '!';
  if (negate) i++;
  let body = '';
  // A `]` right after `[` or `[!` is a member, not the end.
  for (let first = true; i < chars.length && (first || chars[i] !== ']'); first = false) {
    const from = chars[i] as string;
    const to = chars[i + 2];
    if (chars[i + 1] === '-' && to !== undefined && to !== ']') {
      // A reversed range matches nothing (as in fnmatch) instead of making RegExp throw.
      if ((from.codePointAt(0) as number) <= (to.codePointAt(0) as number)) {
        body += `${classChar(from)}-${classChar(to)}`;
      }
      i += 3;
    } else {
      body += classChar(from);
      i++;
    }
  }
  if (i >= chars.length) return null;
  return { source: `[${negate ? '^' : ''}${body}]`, end: i };
}

// With the `u` flag only syntax characters may be escaped, and `-` only inside a set.
function escapeChar(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/u.test(c) ? `\\${c}` : c;
}

function classChar(c: string): string {
  return /[\\^\][-]/u.test(c) ? `\\${c}` : c;
}
