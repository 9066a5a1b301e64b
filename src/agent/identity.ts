// The agent's name: `fastmon-agent-<user>-<id>` with the id from swf-monitor, or `-local-<pid>` without one.

import { setTimeout as sleep } from 'node:timers/promises';
import { osUser } from '../config/os-user.js';
import { FastmonError, isFastmonError, messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { MonitorClient } from '../monitor/client.js';

/** `retryDelayMs`: monitor.retry_delay_ms; the wait between requests for an id starts at ten times it. */
export async function agentName(
  monitor: MonitorClient | null,
  retryDelayMs: number,
  logger: Logger,
  signal?: AbortSignal,
): Promise<string> {
  if (!monitor) return `fastmon-agent-${osUser()}-local-${process.pid}`;
  return `fastmon-agent-${osUser()}-${await agentId(monitor, retryDelayMs, logger, signal)}`;
}

/**
 * The agent id from swf-monitor. Like BaseAgent, keep asking while the monitor is down (5 s by
 * default, doubling up to 60 s), since an agent without a name cannot report; unlike it, a stop
 * signal ends the wait.
 */
async function agentId(
  monitor: MonitorClient,
  retryDelayMs: number,
  logger: Logger,
  signal?: AbortSignal,
): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await monitor.nextAgentId(signal);
    } catch (err) {
      if (signal?.aborted)
        throw new FastmonError('SHUTDOWN', 'stopped while waiting for an agent id from swf-monitor');
      if (isFastmonError(err, 'MONITOR_REJECTED') || isFastmonError(err, 'MONITOR_REDIRECT')) throw err;
      const waitMs = Math.min(60_000, 10 * retryDelayMs * 2 ** attempt);
      logger.error(
        { code: isFastmonError(err) ? err.code : 'MONITOR_UNAVAILABLE', retryInMs: waitMs },
        `cannot get an agent id from swf-monitor: ${messageOf(err)}`,
      );
      await sleep(waitMs, undefined, { signal }).catch(() => {});
    }
  }
}
