import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, type TestAgent } from '../support/agent.js';
import { type Collector, TestPeer, uniqueTopic } from '../support/broker.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

/**
 * A long fuzz through the real broker: 10,000 hostile messages (every stf_ready field with a wrong
 * type or an over-long value, unknown and huge msg_types, bodies that are not JSON, deeply nested
 * or over the body limit, lifecycle messages inventing runs) with 100 valid stf_ready interleaved.
 * Runtime is about 30-60 s per broker on two busy cores.
 */
const MUTATIONS = 10_000;
const VALID_EVERY = 100;
const RUN = '103001';
const SEED = 0x15f00d;

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Kind = 'invalid' | 'ignored' | 'lifecycle';
interface Hostile {
  kind: Kind;
  body: string;
}

const WRONG_TYPES: Record<string, unknown[]> = {
  filename: [5, true, {}, ['a']],
  run_id: [{}, [1], 1.5, true],
  namespace: [7, {}, ['x']],
  size_bytes: ['huge', -3, 1.5, {}],
  size: ['x', -1],
  tf_count: [0, -5, 'many', 2.5],
  sequence: ['first', 1.25],
  checksum: [42, {}],
  file_url: [1, []],
  state: [1, {}],
  substate: [false],
  execution_id: [3, []],
};
const OVER_LIMIT: Record<string, number> = {
  run_id: 51,
  execution_id: 129,
  namespace: 129,
  state: 65,
  substate: 65,
  checksum: 129,
  file_url: 8193,
  sender: 257,
};

function hostile(next: () => number, namespace: string, i: number): Hostile {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const base = () => ({
    msg_type: 'stf_ready',
    namespace,
    run_id: RUN,
    filename: `swf.${RUN}.${String(900_000 + i).padStart(6, '0')}.stf`,
    state: 'run',
    substate: 'physics',
  });
  const r = next();
  if (r < 0.3) {
    const field = pick(Object.keys(WRONG_TYPES));
    return {
      kind: 'invalid',
      body: JSON.stringify({ ...base(), [field]: pick(WRONG_TYPES[field] as unknown[]) }),
    };
  }
  if (r < 0.45) {
    const field = pick(Object.keys(OVER_LIMIT));
    const length = (OVER_LIMIT[field] as number) + Math.floor(next() * (next() < 0.02 ? 120_000 : 2_000));
    return { kind: 'invalid', body: JSON.stringify({ ...base(), [field]: 'z'.repeat(length) }) };
  }
  if (r < 0.5) {
    const stem = 'n'.repeat(231 + Math.floor(next() * 500));
    return { kind: 'invalid', body: JSON.stringify({ ...base(), filename: `${stem}.stf` }) };
  }
  if (r < 0.6) {
    const text = JSON.stringify(base());
    return { kind: 'invalid', body: text.slice(0, Math.floor(next() * (text.length - 1))) };
  }
  if (r < 0.65)
    return { kind: 'invalid', body: pick(['[1,2]', '42', 'null', '"stf_ready"', '{}', '{"msg_type":7}']) };
  if (r < 0.68) {
    // A msg_type no producer would send: over the limit, sometimes 128 KB.
    const length = 65 + Math.floor(next() * (next() < 0.05 ? 128 * 1024 : 500));
    return { kind: 'invalid', body: JSON.stringify({ msg_type: 't'.repeat(length), namespace }) };
  }
  if (r < 0.7) {
    const depth = next() < 0.1 ? 100_000 : 1_000;
    return { kind: 'invalid', body: `${'['.repeat(depth)}${']'.repeat(depth)}` };
  }
  if (r < 0.7005) return { kind: 'invalid', body: JSON.stringify({ ...base(), pad: 'p'.repeat(1_100_000) }) };
  if (r < 0.85) {
    // Unknown types the agent ignores (counted under "other"), distinct every time.
    return {
      kind: 'ignored',
      body: JSON.stringify({ msg_type: `junk_${i}_${Math.floor(next() * 1e9)}`, namespace }),
    };
  }
  if (r < 0.9) return { kind: 'ignored', body: JSON.stringify({ ...base(), namespace: `other-${i}` }) };
  // Lifecycle messages that invent runs: valid, no rows, bounded by agent.max_runs.
  const msgType = pick(['run_imminent', 'start_run', 'pause_run', 'resume_run']);
  return {
    kind: 'lifecycle',
    body: JSON.stringify({ msg_type: msgType, namespace, run_id: String(500_000 + i) }),
  };
}

let double: MonitorDouble;
let peer: TestPeer;
let a: TestAgent;
let out: Collector;
let namespace: string;

beforeAll(async () => {
  double = await startMonitorDouble();
  peer = await TestPeer.connect();
  const topic = uniqueTopic('fuzz');
  namespace = `ns-${randomUUID().slice(0, 8)}`;
  out = await peer.collect(`${topic}.out`);
  a = await startTestAgent({
    monitor: double,
    env: {
      FASTMON_SUBSCRIPTION: topic,
      FASTMON_BROADCAST: `${topic}.out`,
      FASTMON_DEAD_LETTER: `${topic}.dlq`,
      FASTMON_SEED: 'fuzz-seed',
      FASTMON_SUMMARY_INTERVAL_S: '2',
      FASTMON_CLIENT_ID: `fastmon-fuzz-${randomUUID()}`,
      FASTMON_INLINE: 'true',
    },
    args: ['--namespace', namespace, '--log-level', 'info'],
  });
  (globalThis as { fuzzTopic?: string }).fuzzTopic = topic;
});
afterAll(async () => {
  await a?.stop();
  await peer?.close();
  await double?.close();
});

describe('the agent under a long fuzz through the real broker', () => {
  it('gives 7 rows and 7 notifications per valid stf_ready, a coded log line per invalid message, bounded memory and /metrics, and no reconnect', async () => {
    const topic = (globalThis as { fuzzTopic?: string }).fuzzTopic as string;
    const next = rng(SEED);
    const rssBefore = process.memoryUsage().rss;
    const counts: Record<Kind | 'valid', number> = { invalid: 0, ignored: 0, lifecycle: 0, valid: 0 };
    const validNames: string[] = [];
    let batch: Promise<void>[] = [];
    for (let i = 0; i < MUTATIONS; i++) {
      if (i % VALID_EVERY === 0) {
        const seq = counts.valid + 1;
        const filename = `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
        double.addStfFile({ stf_filename: filename, run_number: Number(RUN) });
        const body = {
          msg_type: 'stf_ready',
          namespace,
          run_id: RUN,
          filename,
          state: 'run',
          substate: 'physics',
        };
        // Some valid messages carry what legitimate producers add: a long header, many headers.
        const headers =
          seq % 3 === 0
            ? { 'x-trace': 't'.repeat(2048) }
            : seq % 3 === 1
              ? Object.fromEntries(Array.from({ length: 70 }, (_, h) => [`x-h${h}`, String(h)]))
              : {};
        batch.push(peer.publish(topic, body, headers));
        validNames.push(filename);
        counts.valid++;
      }
      const m = hostile(next, namespace, i);
      counts[m.kind]++;
      batch.push(peer.publish(topic, m.body));
      if (batch.length >= 200) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);

    const expectedRows = counts.valid * 7;
    await out.waitFor(
      (c) => c.bodies('tf_file_registered').length >= expectedRows,
      120_000,
      'every valid sample',
    );
    // Every message handled: the coded refusals are all in the log.
    const coded = () =>
      a.logs.records().filter((r) => typeof r.code === 'string' && String(r.code).startsWith('MESSAGE_'))
        .length;
    const deadline = Date.now() + 60_000;
    while (coded() < counts.invalid && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));

    expect(counts.invalid).toBeGreaterThan(6_000);
    expect(coded()).toBe(counts.invalid);
    for (const r of a.logs.records().filter((l) => String(l.code ?? '').startsWith('MESSAGE_')))
      expect(r.msgId, JSON.stringify(r).slice(0, 200)).toBeTruthy();

    expect(double.fastmonFiles).toHaveLength(expectedRows);
    const notes = out.bodies('tf_file_registered');
    expect(notes).toHaveLength(expectedRows);
    for (const name of validNames) {
      expect(
        double.fastmonFiles.filter((row) => row.stf_file === name),
        name,
      ).toHaveLength(7);
      expect(
        notes.filter((n) => n.stf_filename === name),
        name,
      ).toHaveLength(7);
    }

    // Bounded: runs tracked, series, /metrics, memory.
    expect(a.agent.runs.size).toBeLessThanOrEqual(a.config.agent.maxRuns);
    const metrics = await (await fetch(`http://127.0.0.1:${a.agent.httpPort}/metrics`)).text();
    expect(metrics.length).toBeLessThan(48 * 1024);
    const messageSeries = metrics.split('\n').filter((l) => l.startsWith('fastmon_messages_total{'));
    expect(messageSeries.length).toBeLessThanOrEqual(8);
    const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    expect(rssGrowthMb).toBeLessThan(250);
    // The agent's own output (summaries for up to max_runs runs, dead letters) never cost it its connection.
    expect(a.logs.find((r) => r.msg === 'broker connection lost or refused; reconnecting')).toBeUndefined();
    expect((await a.agent.metrics.reconnects.get()).values[0]?.value ?? 0).toBe(0);
    console.info(
      `fuzz: ${JSON.stringify(counts)}, rows ${double.fastmonFiles.length}, /metrics ${metrics.length} B, ` +
        `RSS +${rssGrowthMb.toFixed(0)} MB, runs tracked ${a.agent.runs.size}, summaries ${out.bodies('fastmon_summary').length}`,
    );
  }, 300_000);
});
