import { describe, expect, it } from 'vitest';
import { MAX_REISSUES, reissueHeaders } from '../src/inputs/reissue.js';
import { brokerKindOf, windowHeaders } from '../src/messaging/flow.js';
import { FRAME_HEADER_ALLOWANCE } from '../src/messaging/limits.js';
import { planSubscriptions, sharedTopicOf } from '../src/messaging/subscriptions.js';

describe('flow control per broker', () => {
  it('tells Artemis from Classic by the CONNECTED server header', () => {
    expect(brokerKindOf('ActiveMQ-Artemis/2.40.0 ActiveMQ Artemis Messaging Engine')).toBe('artemis');
    expect(brokerKindOf('ActiveMQ/5.17.6')).toBe('classic');
    expect(brokerKindOf('RabbitMQ/3.13.0')).toBe('unknown');
    expect(brokerKindOf(undefined)).toBe('unknown');
  });

  it('gives Artemis a byte window that holds the message count at the largest message size', () => {
    const h = windowHeaders('artemis', 'client-individual', { messages: 500, messageBytes: 1_048_576 });
    expect(h).toEqual({ 'consumer-window-size': String(500 * (1_048_576 + FRAME_HEADER_ALLOWANCE)) });
  });

  it('gives Classic the message count as activemq.prefetchSize', () => {
    expect(windowHeaders('classic', 'client-individual', { messages: 64, messageBytes: 1024 })).toEqual({
      'activemq.prefetchSize': '64',
    });
  });

  it('turns the Artemis window off for ack auto, which never returns window credit', () => {
    expect(windowHeaders('artemis', 'auto', { messages: 500, messageBytes: 1_048_576 })).toEqual({
      'consumer-window-size': '-1',
    });
  });

  it('caps the Artemis window at a Java int, and sends both headers to an unknown broker', () => {
    const big = windowHeaders('artemis', 'client-individual', { messages: 100_000, messageBytes: 1_048_576 });
    expect(big['consumer-window-size']).toBe(String(2 ** 31 - 1));
    expect(
      Object.keys(windowHeaders('unknown', 'client-individual', { messages: 5, messageBytes: 1024 })),
    ).toEqual(['consumer-window-size', 'activemq.prefetchSize']);
  });
});

describe('subscriptions for a shared queue', () => {
  it('finds the topic behind an Artemis fully qualified queue name or a Classic virtual-topic queue', () => {
    expect(sharedTopicOf('/topic/epictopic::fastmon')).toBe('/topic/epictopic');
    expect(sharedTopicOf('/queue/Consumer.fastmon.epictopic')).toBe('/topic/epictopic');
    expect(sharedTopicOf('/topic/epictopic')).toBeNull();
    expect(sharedTopicOf('/queue/fastmon')).toBeNull();
  });

  it('adds a lifecycle subscription of its own to the topic, and no selector on the shared queue', () => {
    expect(planSubscriptions('/topic/epictopic::fastmon', 'dur')).toEqual([
      { destination: '/topic/epictopic::fastmon', role: 'stf', selector: false, durableName: '' },
      { destination: '/topic/epictopic', role: 'lifecycle', selector: true, durableName: 'dur' },
    ]);
    expect(planSubscriptions('/topic/epictopic', '')).toEqual([
      { destination: '/topic/epictopic', role: 'all', selector: true, durableName: '' },
    ]);
  });
});

describe('redelivered messages of a shared Artemis queue', () => {
  const queue = '/topic/epictopic::fastmon';
  it('are sent back as new, persistent, with a count of their own', () => {
    expect(reissueHeaders('artemis', 'stf', queue, { redelivered: 'true' })).toEqual({
      persistent: 'true',
      fastmon_reissues: '1',
    });
    expect(
      reissueHeaders('artemis', 'stf', queue, { redelivered: 'true', fastmon_reissues: '7' }),
    ).toMatchObject({
      fastmon_reissues: '8',
    });
  });

  it('are handled as they are when first delivered, on Classic, on a topic, or past the agents own limit', () => {
    expect(reissueHeaders('artemis', 'stf', queue, { redelivered: 'false' })).toBeNull();
    expect(
      reissueHeaders('classic', 'stf', '/queue/Consumer.fastmon.epictopic', { redelivered: 'true' }),
    ).toBeNull();
    expect(reissueHeaders('artemis', 'all', '/topic/epictopic', { redelivered: 'true' })).toBeNull();
    expect(reissueHeaders('artemis', 'lifecycle', '/topic/epictopic', { redelivered: 'true' })).toBeNull();
    expect(
      reissueHeaders('artemis', 'stf', queue, {
        redelivered: 'true',
        fastmon_reissues: String(MAX_REISSUES),
      }),
    ).toBeNull();
  });
});
