import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, type TestAgent } from '../support/agent.js';
import { TestPeer, uniqueTopic } from '../support/broker.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const RUN = '108500';
const BURST = 500;
let double: MonitorDouble;
let peer: TestPeer;
let running: TestAgent[] = [];

beforeAll(async () => {
  double = await startMonitorDouble();
  peer = await TestPeer.connect();
});
afterAll(async () => {
  await peer.close();
  await double.close();
});
afterEach(async () => {
  double.clearFaults();
  await Promise.all(running.map((a) => a.stop()));
  running = [];
});

function name(seq: number): string {
  return `swf.${RUN}.${String(seq).padStart(6, '0')}.stf`;
}

/** Samples the agent's in-progress STF count (what /healthz reports) until stopped; returns the highest seen. */
function watchInFlight(a: TestAgent): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, a.agent.health().inFlight);
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

describe('flow control', () => {
  it('a burst of 500 stf_ready has max_in_flight STFs in progress at once, with the default settings', async () => {
    double.reset();
    for (let seq = 1; seq <= BURST; seq++)
      double.addStfFile({ stf_filename: name(seq), run_number: Number(RUN) });
    // A slow swf-monitor keeps each STF in progress for a while, so the count can build up.
    double.delay(20);
    const topic = uniqueTopic('flow');
    const out = await peer.collect(`${topic}.out`);
    const a = await startTestAgent({
      monitor: double,
      env: {
        FASTMON_SUBSCRIPTION: topic,
        FASTMON_BROADCAST: `${topic}.out`,
        FASTMON_SEED: `s-${randomUUID()}`,
      },
    });
    running.push(a);
    expect(a.config.agent.maxInFlight).toBe(64);
    const watch = watchInFlight(a);
    // Sent at once (receipts awaited together): a burst, as daqsim's end of a fast run.
    await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        peer.publish(topic, { msg_type: 'stf_ready', filename: name(i + 1), run_id: RUN }),
      ),
    );
    await out.waitFor((c) => c.bodies('tf_file_registered').length === BURST * 7, 120_000, 'every sample');
    const peak = watch.stop();
    expect(peak).toBe(64);
    expect(double.fastmonFiles).toHaveLength(BURST * 7);
  }, 180_000);

  it('with ack auto (BaseAgent mode) handles every stf_ready of a burst: the window never stalls it', async () => {
    double.reset();
    for (let seq = 1; seq <= 50; seq++)
      double.addStfFile({ stf_filename: name(seq), run_number: Number(RUN) });
    const topic = uniqueTopic('auto');
    const out = await peer.collect(`${topic}.out`);
    const a = await startTestAgent({
      monitor: double,
      env: {
        FASTMON_SUBSCRIPTION: topic,
        FASTMON_BROADCAST: `${topic}.out`,
        FASTMON_ACK: 'auto',
        // The smallest window the settings give (a few messages' worth on Artemis), used up in a moment.
        FASTMON_PREFETCH: '1',
        FASTMON_MAX_IN_FLIGHT: '1',
        FASTMON_MAX_MESSAGE_BYTES: '1024',
      },
    });
    running.push(a);
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        peer.publish(topic, { msg_type: 'stf_ready', filename: name(i + 1), run_id: RUN }),
      ),
    );
    await out.waitFor((c) => c.bodies('tf_file_registered').length === 350, 30_000, 'every sample');
    expect(double.fastmonFiles).toHaveLength(350);
  });
});
