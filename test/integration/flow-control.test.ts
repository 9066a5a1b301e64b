import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { agentTestBed, type TestAgent } from '../support/agent.js';

const RUN = '108500';
const BURST = 500;

// Each test publishes to bed.topic; the agents broadcast to `${bed.topic}.out`, which bed.seen collects.
const bed = agentTestBed({ label: 'flow', run: RUN, stfs: BURST, broadcastOut: true });
afterEach(() => bed.double.clearFaults());

const { stfName: name } = bed;

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
    // A slow swf-monitor keeps each STF in progress for a while, so the count can build up.
    bed.double.delay(20);
    const a = await bed.agent({ FASTMON_SEED: `s-${randomUUID()}` });
    expect(a.config.agent.maxInFlight).toBe(64);
    const watch = watchInFlight(a);
    // Sent at once (receipts awaited together): a burst, as daqsim's end of a fast run.
    await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        bed.peer.publish(bed.topic, { msg_type: 'stf_ready', filename: name(i + 1), run_id: RUN }),
      ),
    );
    await bed.seen.waitFor(
      (c) => c.bodies('tf_file_registered').length === BURST * 7,
      120_000,
      'every sample',
    );
    const peak = watch.stop();
    expect(peak).toBe(64);
    expect(bed.double.fastmonFiles).toHaveLength(BURST * 7);
  }, 180_000);

  it('with ack auto (BaseAgent mode) handles every stf_ready of a burst: the window never stalls it', async () => {
    await bed.agent({
      FASTMON_ACK: 'auto',
      // The smallest window the settings give (a few messages' worth on Artemis), used up in a moment.
      FASTMON_PREFETCH: '1',
      FASTMON_MAX_IN_FLIGHT: '1',
      FASTMON_MAX_MESSAGE_BYTES: '1024',
    });
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        bed.peer.publish(bed.topic, { msg_type: 'stf_ready', filename: name(i + 1), run_id: RUN }),
      ),
    );
    await bed.seen.waitFor((c) => c.bodies('tf_file_registered').length === 350, 30_000, 'every sample');
    expect(bed.double.fastmonFiles).toHaveLength(350);
  });
});
