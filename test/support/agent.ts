// Starts a real agent in-process for integration tests: real broker, real worker pool, captured logs.

import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type Agent, buildAgent } from '../../src/agent/agent.js';
import { AGENT } from '../../src/cli/agent-command.js';
import { parseCommandLine } from '../../src/cli/options.js';
import { type Config, loadConfig } from '../../src/config/load.js';
import type { Logger } from '../../src/log/logger.js';
import type { MonitorLogShipper } from '../../src/log/monitor-logs.js';
import type { FrameFilterLimits } from '../../src/messaging/frame-filter.js';
import { brokerAddress } from './broker.js';
import { type CapturedLogs, captureLogs } from './logs.js';
import type { MonitorDouble } from './monitor-double.js';
import { rememberSecret } from './secrets.js';

export interface TestAgent {
  agent: Agent;
  config: Config;
  logs: CapturedLogs;
  stdout: string[];
  stop(): Promise<void>;
}

export interface TestAgentOptions {
  /** Environment as an operator would set it; merged over the broker and monitor of the test. */
  env?: Record<string, string>;
  monitor?: MonitorDouble;
  broker?: boolean;
  consume?: boolean;
  /** Command-line flags, e.g. ['--namespace', 'x']. */
  args?: string[];
  /** Instead of the captured logger (its lines are then not in `logs`). */
  logger?: Logger;
  logShipper?: MonitorLogShipper;
  metricsPort?: boolean;
  /** Lower inbound frame limits, to reach them through a broker that refuses larger frames. */
  frameLimits?: FrameFilterLimits;
}

export async function startTestAgent(options: TestAgentOptions = {}): Promise<TestAgent> {
  const env: Record<string, string> = {
    FASTMON_WORKERS: '1',
    FASTMON_HTTP_PORT: '0',
    FASTMON_HEARTBEAT_INTERVAL_S: '60',
    FASTMON_MONITOR_RETRY_DELAY_MS: '20',
    FASTMON_RECONNECT_MAX_MS: '2000',
    // Each test agent its own local store (the outbox lives there); FASTMON_OUTBOX names only an old file to import.
    FASTMON_CATALOG: path.join(tmpdir(), `fastmon-test-store-${randomUUID()}.sqlite`),
    FASTMON_OUTBOX: path.join(tmpdir(), `fastmon-test-outbox-${randomUUID()}.jsonl`),
    // A test-only account of the Artemis test broker (Classic's accepts any login): a distinctive
    // password, so that the secret scan can tell it never reached a log.
    ACTIVEMQ_USER: 'fastmon-test',
    ACTIVEMQ_PASSWORD: 'admin-broker-password',
    ...(options.broker === false ? {} : brokerEnv()),
    ...(options.monitor
      ? { SWF_MONITOR_URL: options.monitor.url, SWF_API_TOKEN: options.monitor.token }
      : {}),
    ...options.env,
  };
  rememberSecret(env.SWF_API_TOKEN);
  rememberSecret(env.ACTIVEMQ_PASSWORD);
  const { config } = loadConfig({
    env,
    flags: parseCommandLine(AGENT, options.args ?? []).config,
    cwd: process.cwd(),
  });
  const logs = captureLogs();
  const stdout: string[] = [];
  const out = new Writable({
    write(chunk, _e, cb) {
      stdout.push(chunk.toString());
      cb();
    },
  });
  const agent = await buildAgent({
    config,
    logger: options.logger ?? logs.logger,
    stdout: out,
    consume: options.consume,
    logShipper: options.logShipper,
    metricsPort: options.metricsPort,
    frameLimits: options.frameLimits,
  });
  await agent.start();
  return { agent, config, logs, stdout, stop: () => agent.stop('test finished') };
}

function brokerEnv(): Record<string, string> {
  const { host, port } = brokerAddress();
  return { ACTIVEMQ_HOST: host, ACTIVEMQ_PORT: String(port) };
}
