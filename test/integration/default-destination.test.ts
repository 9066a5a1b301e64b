// The agent with its default settings on the testbed's `/topic/epictopic`, on each STOMP acceptor style
// of the test broker: Artemis with and without prefix stripping, Classic (which always strips).

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startTestAgent } from '../support/agent.js';
import { brokerKind, TestPeer } from '../support/broker.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const broker = brokerKind() === 'artemis' ? 'Artemis' : 'Classic';
const acceptors: { style: string; port: number }[] = [
  { style: inject('stompStyle'), port: inject('stompPort') },
];
if (inject('stompOtherStylePort') > 0) {
  acceptors.push({
    style: inject('stompStyle') === 'literal' ? 'prefixed' : 'literal',
    port: inject('stompOtherStylePort'),
  });
}
const describeStyle = (style: string) =>
  style === 'literal'
    ? 'no prefix stripping: /topic/epictopic is an address of that name'
    : 'prefix stripping: /topic/epictopic is the multicast address epictopic';

let double: MonitorDouble;
beforeAll(async () => {
  double = await startMonitorDouble();
});
afterAll(async () => {
  await double.close();
});

describe(`the agent with default settings on ${broker}`, () => {
  it('runs on every STOMP acceptor style the test broker offers (both on Artemis)', () => {
    expect(acceptors.map((a) => a.style).sort()).toEqual(
      brokerKind() === 'artemis' ? ['literal', 'prefixed'] : ['prefixed'],
    );
  });

  for (const { style, port } of acceptors) {
    it(`receives stf_ready that a testbed producer sends to /topic/epictopic (${broker}, ${describeStyle(style)}, port ${port})`, async () => {
      double.reset();
      const run = 120000 + Math.floor(Math.random() * 9000);
      const stf = `swf.${run}.${randomUUID().slice(0, 6)}.stf`;
      double.addStfFile({ stf_filename: stf, run_number: run });
      const peer = await TestPeer.connect(port);
      // Only the broker's address and swf-monitor are set: subscription, broadcast, ack and window
      // are the agent's defaults.
      const agent = await startTestAgent({ monitor: double, env: { ACTIVEMQ_PORT: String(port) } });
      try {
        expect(agent.config.broker.subscription).toBe('/topic/epictopic');
        const seen = await peer.collect('/topic/epictopic');
        await peer.publish('/topic/epictopic', {
          msg_type: 'stf_ready',
          filename: stf,
          run_id: String(run),
          state: 'run',
          substate: 'physics',
        });
        await seen.waitFor(
          (c) => c.bodies('tf_file_registered').filter((b) => b.stf_filename === stf).length === 7,
          20_000,
          `7 tf_file_registered for ${stf}`,
        );
        expect(double.fastmonFiles.filter((r) => r.stf_file === stf)).toHaveLength(7);
      } finally {
        await agent.stop();
        await peer.close();
      }
    });
  }
});
