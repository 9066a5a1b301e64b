// Fault injection in the monitor double: which requests a fail or hang rule catches, and what a failing
// answer looks like.

import type { Reply } from './http.js';

/** `path`: a string matches when the request target contains it; a RegExp is tested against the target. */
export interface FaultMatch {
  path?: RegExp | string;
  method?: string;
  /** Number of matching requests affected; forever (until clearFaults) when omitted. */
  times?: number;
}

export interface FailRule extends FaultMatch {
  status: number;
  /** A string is sent as text/html (what Apache or Django error pages look like), anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Fault extends FailRule {
  kind: 'fail' | 'hang';
  remaining: number;
}

/** `url` is the raw request target (base path, path and query). */
export function matches(rule: FaultMatch, method: string, url: string): boolean {
  if (rule.method !== undefined && rule.method.toUpperCase() !== method) return false;
  if (rule.path === undefined) return true;
  if (typeof rule.path === 'string') return url.includes(rule.path);
  rule.path.lastIndex = 0;
  return rule.path.test(url);
}

export function faultReply(rule: FailRule): Reply {
  const headers = rule.headers ?? {};
  if (typeof rule.body === 'string') return { status: rule.status, text: rule.body, headers };
  return {
    status: rule.status,
    body: rule.body ?? { detail: `Injected fault: HTTP ${rule.status}.` },
    headers,
  };
}
