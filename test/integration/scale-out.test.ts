import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StompitClient, stompit } from '../../src/messaging/stompit.js';
import { brokerAddress, brokerKind, TestPeer } from '../support/broker.js';
import { type Started, startCli } from '../support/cli.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';
import { sharedQueue, sharedQueueAgentEnv, until } from '../support/shared-queue.js';

const RUN = '108700';
const STFS = 3000;
const SAMPLES = STFS * 7;
const ARTEMIS_CLI = process.env.FASTMON_TEST_ARTEMIS_CLI || '/opt/apache-artemis-2.40.0/bin/artemis';
const ARTEMIS_CORE_URL = process.env.FASTMON_TEST_ARTEMIS_CORE_URL || 'tcp://127.0.0.1:61716';

let double: MonitorDouble;
let peer: TestPeer;
const agents: Started[] = [];

/** A queue's counters as Artemis' own CLI reports them (through the core acceptor), by column title. */
async function artemisQueueStat(queue: string): Promise<Record<string, number>> {
  const { stdout } = await promisify(execFile)(
    ARTEMIS_CLI,
    [
      'queue',
      'stat',
      '--url',
      ARTEMIS_CORE_URL,
      '--user',
      'admin',
      '--password',
      'admin',
      '--queueName',
      queue,
    ],
    { env: { ...process.env, JAVA_ARGS: '-Xmx128m' }, timeout: 60_000 },
  );
  // A table whose titles take two lines (|NAME |ADDRESS |CONSUMER| MESSAGE| ... / | | | COUNT | COUNT | ...).
  const lines = stdout.split('\n').filter((l) => l.startsWith('|'));
  const cells = (l: string) => l.split('|').map((c) => c.trim());
  const [top, bottom] = [cells(lines[0] ?? ''), cells(lines[1] ?? '')];
  const row = lines.map(cells).find((c) => c[1] === queue);
  if (top[1] !== 'NAME' || !row) throw new Error(`queue ${queue} not in the broker's queue stat:\n${stdout}`);
  const stat: Record<string, number> = {};
  top.forEach((title, i) => {
    if (i > 2) stat[`${title} ${bottom[i] ?? ''}`.trim()] = Number(row[i]);
  });
  return stat;
}

/** An agent process on the shared queue, on the inline executor (the STFs are small JSON ones). */
function agentEnv(queue: { topic: string; subscription: string }, extra: Record<string, string> = {}) {
  return sharedQueueAgentEnv(double, queue, { FASTMON_INLINE: '1', SWF_LOG_LEVEL: 'INFO', ...extra });
}

/** Classic: the messages in a queue, by a STOMP browser (`browser: true`), which takes nothing. */
async function classicQueueDepth(queue: string): Promise<number> {
  const { host, port } = brokerAddress();
  const client = await new Promise<StompitClient>((resolve, reject) =>
    stompit.connect(
      {
        host,
        port,
        connectHeaders: { host: '/', login: 'admin', passcode: 'admin', 'accept-version': '1.2' },
      },
      (err, c) => (err ? reject(err) : resolve(c)),
    ),
  );
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end of browse of ${queue} within 30 s`)), 30_000);
    client.subscribe({ destination: queue, ack: 'auto', browser: 'true' }, (err, message) => {
      if (err) return;
      if (message.headers.browser === 'end') {
        clearTimeout(timer);
        resolve();
      } else count++;
      message.readString('utf-8', () => {});
    });
  });
  client.disconnect();
  return count;
}

function name(seq: number): string {
  return `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
}

beforeAll(async () => {
  double = await startMonitorDouble();
  peer = await TestPeer.connect();
});
afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  await peer.close();
  await double.close();
});

describe('scale-out by competing consumers', () => {
  it('three agents share one queue (Artemis /topic/…::<queue>, Classic /queue/Consumer.<queue>.VirtualTopic.…); one is SIGKILLed mid-stream and every sample still ends once in swf-monitor', async () => {
    const artemis = brokerKind() === 'artemis';
    for (let seq = 1; seq <= STFS; seq++)
      double.addStfFile({ stf_filename: name(seq), run_number: Number(RUN) });
    // Artemis: a fully qualified queue name; Classic: a virtual topic (test/support/shared-queue.ts).
    const queue = sharedQueue('scale');
    const { topic, subscription, queueName } = queue;
    const seen = await peer.collect(topic);
    for (let i = 0; i < 3; i++) agents.push(startCli(['agent'], agentEnv(queue)));
    // An agent heartbeats once it is started, and started means its subscriptions are confirmed.
    const started = () =>
      new Set(double.heartbeats.map((h) => (h.body as { instance_name: string }).instance_name));
    await until(
      'three agents started',
      () => started().size === 3,
      60_000,
      () => agents.map((a) => a.out.stderr).join('\n'),
    );

    const lifecycle = (msgType: string) => ({ msg_type: msgType, run_id: RUN, execution_id: 'scale-exec' });
    await peer.publish(topic, { ...lifecycle('run_imminent'), state: 'beam', substate: 'not_ready' });
    await peer.publish(topic, { ...lifecycle('start_run'), state: 'run', substate: 'physics' });
    double.delay(2); // a little latency, so the stream lasts long enough to lose an agent in the middle
    const publishing = (async () => {
      for (let from = 1; from <= STFS; from += 250) {
        await Promise.all(
          Array.from({ length: Math.min(250, STFS - from + 1) }, (_, i) =>
            peer.publish(topic, { msg_type: 'stf_ready', filename: name(from + i), run_id: RUN }),
          ),
        );
      }
    })();
    const registered = () => seen.bodies('tf_file_registered');
    await until('a fifth of the samples', () => registered().length >= SAMPLES / 5, 120_000);
    const victim = agents[0] as Started;
    victim.proc.kill('SIGKILL');
    const rowsAtKill = double.fastmonFiles.length;
    await publishing;

    const notified = () => new Set(registered().map((n) => n.tf_filename));
    // What is left in the shared queue; on Artemis the counters it came from are kept, as they say who
    // holds it (docs/scaling-out.md: a message Artemis keeps delivering to a consumer that is gone).
    const last: { stat?: Record<string, number> } = {};
    const depth = async () => {
      if (!artemis) return classicQueueDepth(subscription);
      last.stat = await artemisQueueStat(queueName);
      return (last.stat['MESSAGE COUNT'] ?? -1) + (last.stat['DELIVERING COUNT'] ?? -1);
    };
    const counters = () => (last.stat ? ` ${JSON.stringify(last.stat)}` : '');
    await until(
      'every sample registered and notified',
      () => double.fastmonFiles.length === SAMPLES && notified().size === SAMPLES,
      240_000,
    ).catch(async (err: Error) => {
      // For the next engineer: which STFs are short, what each agent logged about them, and where the
      // broker has their stf_ready (an agent at INFO logs every STF it samples or skips).
      const known = notified();
      const short = [
        ...new Set(double.fastmonFiles.filter((r) => !known.has(r.tf_filename)).map((r) => r.stf_file)),
      ];
      const about = (log: string) =>
        log
          .split('\n')
          .filter(
            (line) =>
              short.slice(0, 5).some((stf) => line.includes(stf)) || /"level":"(warn|error)/.test(line),
          )
          .slice(-20)
          .join('\n');
      const where = await depth().then((n) => `${n} messages${counters()}`, String);
      err.message +=
        `\n${double.fastmonFiles.length} rows, ${known.size} notified; STFs short of notifications: ` +
        `${short.slice(0, 5).join(' ') || 'none'} (${short.length})\nqueue: ${where}\n` +
        agents.map((a, i) => `agent ${i}:\n${about(a.out.stderr)}`).join('\n');
      throw err;
    });
    expect(rowsAtKill).toBeLessThan(SAMPLES);
    expect(new Set(double.fastmonFiles.map((r) => r.tf_filename)).size).toBe(SAMPLES);

    await peer.publish(topic, lifecycle('end_run'));
    const names = [...started()];
    const byAgent = new Map<string, number>();
    for (const n of registered())
      byAgent.set(String(n.processed_by), (byAgent.get(String(n.processed_by)) ?? 0) + 1);
    const statuses = () => seen.bodies('fastmon_status');
    await until(
      'a fastmon_status from each surviving agent',
      () => new Set(statuses().map((s) => s.processed_by)).size >= 2,
      30_000,
    );
    const survivors = names.filter((n) => statuses().some((s) => s.processed_by === n));
    expect(survivors).toHaveLength(2);
    for (const survivor of survivors) {
      // A real share: more than a tenth of the samples each.
      expect(byAgent.get(survivor) ?? 0).toBeGreaterThan(SAMPLES / 10);
      const status = statuses().find((s) => s.processed_by === survivor) as Record<string, unknown>;
      expect(status).toMatchObject({ run_id: RUN, status: 'completed' });
    }

    // The queue drains: its tail (the agents' last broadcasts, the end_run) is taken unread.
    let left = await depth();
    for (const deadline = Date.now() + 60_000; left !== 0 && Date.now() < deadline; left = await depth())
      await new Promise((r) => setTimeout(r, 500));
    expect(left, `left in the queue${counters()}`).toBe(0);

    for (const a of agents.slice(1)) a.proc.kill('SIGTERM');
    expect(await Promise.all(agents.slice(1).map((a) => a.exited))).toEqual([0, 0]);
    if (artemis) {
      const stat = await artemisQueueStat(queueName);
      expect(stat).toMatchObject({ 'MESSAGE COUNT': 0, 'DELIVERING COUNT': 0 });
      // Everything that went in was acknowledged: the stf_ready and the agents' own broadcasts.
      expect(stat['MESSAGES ACKED']).toBe(stat['MESSAGES ADDED']);
      expect(stat['MESSAGES ADDED']).toBeGreaterThan(STFS + SAMPLES);
    } else {
      expect(await classicQueueDepth(subscription)).toBe(0);
    }
  }, 480_000);

  // Artemis-specific: the redelivery limit is Artemis' (Classic does not count lost connections).
  it.runIf(brokerKind() === 'artemis')(
    'on Artemis, an stf_ready held by eleven agents in turn, each SIGKILLed, is still sampled: the redelivery limit (10) never dead-letters it',
    async () => {
      double.reset();
      double.addStfFile({ stf_filename: name(1), run_number: Number(RUN) });
      const queue = sharedQueue('redeliver');
      const { topic } = queue;
      const seen = await peer.collect(topic);
      // swf-monitor never answers: every agent holds the message, unacknowledged, until it is killed.
      double.hang({ path: '/fastmon-files/', method: 'POST' });
      const posts = () =>
        double.requests.filter((r) => r.method === 'POST' && r.path.includes('/fastmon-files/'));
      // A POST held open on a live connection: a killed agent's pipelined request can still be parsed
      // after its death (under load, after the next agent started), but its connection is closed.
      const holding = (from: number) =>
        posts()
          .slice(from)
          .some((r) => r.status === 0 && !r.aborted);
      let logs = '';
      for (let crash = 0; crash < 11; crash++) {
        const before = posts().length;
        const a = startCli(['agent'], agentEnv(queue, { SWF_LOG_LEVEL: 'DEBUG' }));
        agents.push(a);
        if (crash === 0) {
          await until(
            'the first agent subscribed',
            () => a.out.stderr.includes('"msg":"subscribed"') && double.heartbeats.length > 0,
            60_000,
            () => a.out.stderr,
          );
          await new Promise((r) => setTimeout(r, 500));
          await peer.publish(topic, { msg_type: 'stf_ready', filename: name(1), run_id: RUN });
        }
        await until(
          `agent ${crash + 1} working on the STF`,
          () => holding(before),
          60_000,
          () => a.out.stderr.slice(-4000),
        ).catch(async (err: Error) => {
          // Where the message is, for the next engineer: the queue's own counters and the dead letters.
          const stat = async (name: string) => JSON.stringify(await artemisQueueStat(name).catch(String));
          err.message += `\nqueue: ${await stat(queue.queueName)}\nDLQ: ${await stat('DLQ')}\nearlier agents:\n${logs.slice(-4000)}`;
          throw err;
        });
        a.proc.kill('SIGKILL');
        await a.exited;
        logs += a.out.stderr;
      }
      expect(logs.match(/put back on its queue as a new one/g)?.length).toBe(10);
      double.clearFaults();
      const last = startCli(['agent'], agentEnv(queue));
      agents.push(last);
      await seen.waitFor((c) => c.bodies('tf_file_registered').length === 7, 60_000, 'the samples');
      expect(new Set(double.fastmonFiles.map((r) => r.tf_filename)).size).toBe(7);
      last.proc.kill('SIGTERM');
      expect(await last.exited).toBe(0);
    },
    300_000,
  );
});
