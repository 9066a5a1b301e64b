// The OS user name in the names of agents, generators and clients (`fastmon-agent-<user>-<id>`).

import { userInfo } from 'node:os';

/**
 * As BaseAgent's getpass.getuser(): the login environment first, then the password database;
 * `fallback` where neither says (a container without an /etc/passwd entry for its uid).
 */
export function osUser(fallback = 'unknown'): string {
  try {
    return process.env.USER || process.env.LOGNAME || userInfo().username || fallback;
  } catch {
    return fallback;
  }
}
