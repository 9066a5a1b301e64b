// Starts a real agent in-process for integration tests: real broker, real worker pool, captured logs; and
// agentTestBed, the set-up the agent's integration tests share (a monitor double, a broker peer, a fresh topic).

import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { type Agent, buildAgent } from '../../src/agent/agent.js';
import { AGENT } from '../../src/cli/agent-command.js';
import { parseCommandLine } from '../../src/cli/options.js';
import { type Config, loadConfig } from '../../src/config/load.js';
import type { Logger } from '../../src/log/logger.js';
import type { MonitorLogShipper } from '../../src/log/monitor-logs.js';
import type { FrameFilterLimits } from '../../src/messaging/frame-filter.js';
import { brokerAddress, type Collector, TestPeer, uniqueTopic } from './broker.js';
import { type CapturedLogs, captureLogs } from './logs.js';
import { type MonitorDouble, startMonitorDouble } from './monitor-double.js';
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
    // Agent ids restart at 1 with every monitor double, so two test files running at once both have a
    // fastmon-agent-root-2; as client-id that is refused by ActiveMQ ("already connected") until the
    // other disconnects. A client-id of its own for each test agent (a test may still set one).
    FASTMON_CLIENT_ID: `fastmon-test-${randomUUID()}`,
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

export interface AgentTestBedOptions {
  /** Names each test's topic (uniqueTopic). */
  label: string;
  run: string;
  /** STFs swf.<run>.000001.stf … registered in the double before each test. */
  stfs: number;
  /** The agents broadcast to `${topic}.out`, and `seen` collects there, instead of on the topic itself. */
  broadcastOut?: boolean;
  /** Every agent gets `--namespace <the test's namespace>`. */
  namespaced?: boolean;
  /** Environment of every agent of bed.agent(), under what the test gives. */
  env?: Record<string, string>;
}

/**
 * One monitor double and one broker peer for the test file; before each test the double is reset and
 * seeded, and the test gets its own topic, namespace and collector of what is published there; after each
 * test the agents started through agent() are stopped.
 */
export class AgentTestBed {
  double!: MonitorDouble;
  peer!: TestPeer;
  topic = '';
  namespace = '';
  seen!: Collector;
  /** Agents to stop after the test; a test that stopped them itself empties it. */
  running: TestAgent[] = [];

  constructor(private readonly options: AgentTestBedOptions) {}

  /** swf.<run>.<seq, six digits>.stf, of the bed's run unless given. */
  stfName = (seq: number, run = this.options.run): string => `swf.${run}.${String(seq).padStart(6, '0')}.stf`;

  /** Where the agents broadcast (and `seen` listens). */
  get broadcast(): string {
    return this.options.broadcastOut ? `${this.topic}.out` : this.topic;
  }

  /** An agent subscribed to the test's topic, with the bed's environment and `env` over it. */
  async agent(env: Record<string, string> = {}, options: Partial<TestAgentOptions> = {}): Promise<TestAgent> {
    const a = await startTestAgent({
      monitor: this.double,
      env: {
        FASTMON_SUBSCRIPTION: this.topic,
        FASTMON_BROADCAST: this.broadcast,
        ...this.options.env,
        ...env,
      },
      ...(this.options.namespaced ? { args: ['--namespace', this.namespace] } : {}),
      ...options,
    });
    this.running.push(a);
    return a;
  }

  async open(): Promise<void> {
    this.double = await startMonitorDouble();
    this.peer = await TestPeer.connect();
  }

  async beforeTest(): Promise<void> {
    const { run, stfs, label } = this.options;
    this.double.reset();
    for (let seq = 1; seq <= stfs; seq++) {
      this.double.addStfFile({ stf_filename: this.stfName(seq), run_number: Number(run) });
    }
    this.topic = uniqueTopic(label);
    this.namespace = `ns-${randomUUID().slice(0, 8)}`;
    this.seen = await this.peer.collect(this.broadcast);
  }

  async afterTest(): Promise<void> {
    await Promise.all(this.running.map((a) => a.stop()));
    this.running = [];
  }

  async close(): Promise<void> {
    await this.peer.close();
    await this.double.close();
  }
}

/** An AgentTestBed with its vitest hooks registered: call it at the top of a test file. */
export function agentTestBed(options: AgentTestBedOptions): AgentTestBed {
  const bed = new AgentTestBed(options);
  beforeAll(() => bed.open());
  afterAll(() => bed.close());
  beforeEach(() => bed.beforeTest());
  afterEach(() => bed.afterTest());
  return bed;
}
