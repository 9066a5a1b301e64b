// The connections every role opens from the configuration: the broker and swf-monitor (agent and gen).

import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { FrameFilterLimits } from '../messaging/frame-filter.js';
import { StompConnection } from '../messaging/stomp.js';
import { MonitorClient } from '../monitor/client.js';
import { MonitorHttp, type MonitorHttpOptions } from '../monitor/http.js';

export interface BrokerWiring {
  clientId: string;
  logger: Logger;
  /** Inbound bounds, for a role that consumes (the agent); a publisher keeps the defaults. */
  maxBodyBytes?: number;
  frameLimits?: FrameFilterLimits;
}

/** The broker connection of `config.broker`, not started yet. */
export function brokerConnection(config: Config, o: BrokerWiring): StompConnection {
  const b = config.broker;
  return new StompConnection({
    host: b.host,
    port: b.port,
    user: b.user,
    password: b.password,
    useSsl: b.useSsl,
    caFile: b.sslCaCerts,
    heartbeatMs: b.heartbeatMs,
    clientId: o.clientId,
    reconnectMaxMs: b.reconnectMaxMs,
    maxBodyBytes: o.maxBodyBytes,
    frameLimits: o.frameLimits,
    logger: o.logger,
  });
}

/** The swf-monitor client of `config.monitor`, or null when no SWF_MONITOR_URL is set. */
export function monitorClient(
  config: Config,
  logger: Logger,
  observe?: MonitorHttpOptions['observe'],
): MonitorClient | null {
  if (!config.monitor.url) return null;
  return new MonitorClient(new MonitorHttp({ ...config.monitor, logger, observe }));
}
