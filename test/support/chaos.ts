// The harness of the chaos tests (test/chaos/): the agent as its own process, STOMP clients that survive
// broker restarts, the durable observer of the notifications, the stream of stf_ready, the broker's script.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StompConnection } from '../../src/messaging/stomp.js';
import { brokerAddress, brokerKind, brokerScript } from './broker.js';
import { CLI, ROOT } from './cli.js';
import { captureLogs } from './logs.js';

const BROKER_SCRIPT = path.join(ROOT, brokerScript());

/** What the durable observer has seen of the agent's notifications. */
export interface Observed {
  /** Distinct tf_filenames notified. */
  readonly notified: Set<string>;
  /** Every notification, repeats included. */
  readonly count: number;
}

export class ChaosHarness {
  agent: ChildProcess | null = null;
  /** The stderr of every agent process started so far. */
  agentLog = '';
  private readonly connections: StompConnection[] = [];

  /** `label` names the clients on the broker (`fastmon-<label>-observer-…`). */
  constructor(private readonly label: string) {}

  /** A client that survives the broker restarts: our reconnecting connection, durable where asked. */
  connection(role: string): StompConnection {
    const { host, port } = brokerAddress();
    const c = new StompConnection({
      host,
      port,
      user: 'admin',
      password: 'admin',
      useSsl: false,
      caFile: '',
      heartbeatMs: 2000,
      clientId: `fastmon-${this.label}-${role}-${randomUUID().slice(0, 6)}`,
      reconnectInitialMs: 100,
      reconnectMaxMs: 1000,
      connectTimeoutMs: 1000,
      publishTimeoutMs: 5000,
      logger: captureLogs('warn').logger,
    });
    this.connections.push(c);
    return c;
  }

  /** `swf-fastmon agent` with exactly `env` (plus PATH); replaces the handle of the previous one. */
  startAgent(env: Record<string, string>): void {
    const child = spawn(process.execPath, [CLI, 'agent'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    child.stderr?.on('data', (d) => {
      this.agentLog += d;
    });
    child.stdout?.on('data', () => {});
    this.agent = child;
  }

  /**
   * A durable subscriber of the notifications on `destination`, so that none is lost while it reconnects.
   * Resolves once it is connected.
   */
  async observe(destination: string): Promise<Observed> {
    const observed = { notified: new Set<string>(), count: 0 };
    const observer = this.connection('observer');
    observer.subscribe(
      {
        destination,
        ack: 'client-individual',
        // Artemis reads activemq.prefetchSize as a window in bytes (one message at a time): the
        // observer asks it for an unbounded window instead, so that it keeps up with the stream.
        headers: {
          'activemq.subscriptionName': 'observer',
          ...(brokerKind() === 'artemis'
            ? { 'consumer-window-size': '-1' }
            : { 'activemq.prefetchSize': '1000' }),
        },
      },
      (m) => {
        const body = JSON.parse(m.body) as { tf_filename?: string };
        if (body.tf_filename) observed.notified.add(body.tf_filename);
        observed.count++;
        m.ack();
      },
    );
    observer.start();
    await observer.waitConnected(10_000);
    return observed;
  }

  /**
   * Connects the producer; the function it resolves with publishes persistent stf_ready for `filenames` of
   * run `run` (as daqsim sends them), republished when a receipt is lost, at about 400 a second at most so
   * that the stream lasts through the faults.
   */
  async producer(): Promise<(topic: string, run: number, filenames: string[]) => Promise<void>> {
    const producer = this.connection('producer');
    producer.start();
    await producer.waitConnected(10_000);
    return async (topic, run, filenames) => {
      for (const [i, filename] of filenames.entries()) {
        const body = JSON.stringify({
          msg_type: 'stf_ready',
          run_id: String(run),
          filename,
          state: 'run',
          substate: 'physics',
        });
        for (;;) {
          try {
            await producer.publish(topic, body, { persistent: 'true' });
            break;
          } catch {
            await sleep(200);
          }
        }
        if ((i + 1) % 10 === 0) await sleep(20);
      }
    };
  }

  /** The pid of the broker's JVM, from its set-up script's `status`. */
  brokerPid(): number {
    const out = execFileSync('bash', [BROKER_SCRIPT, 'status'], { encoding: 'utf8' });
    const match = /pid\(s\): (\d+)/.exec(out);
    if (!match) throw new Error(`no broker pid in: ${out}`);
    return Number(match[1]);
  }

  /** The killed broker's JVM may still hold its port for a moment: the script is tried a few times. */
  async brokerScript(command: 'start' | 'restart'): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        execFileSync('bash', [BROKER_SCRIPT, command], { encoding: 'utf8', stdio: 'pipe' });
        return;
      } catch (err) {
        if (attempt >= 5) throw err;
        await sleep(1000);
      }
    }
  }

  /** Kills the agent and closes the clients; the broker is left as it is. */
  async close(): Promise<void> {
    this.agent?.kill('SIGKILL');
    for (const c of this.connections) await c.close();
  }
}
