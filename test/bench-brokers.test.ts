// `npm run bench` picks the brokers of its end-to-end scenarios from FASTMON_BENCH_BROKERS.

import { afterEach, describe, expect, it } from 'vitest';
import { benchBrokers, brokerKind, stompPort, useBroker } from '../bench/stomp-peer.js';

const saved = { brokers: process.env.FASTMON_BENCH_BROKERS, port: process.env.ACTIVEMQ_PORT };

afterEach(() => {
  for (const [key, value] of [
    ['FASTMON_BENCH_BROKERS', saved.brokers],
    ['ACTIVEMQ_PORT', saved.port],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  useBroker('artemis');
});

describe('bench brokers', () => {
  it('runs on Artemis and then Classic when nothing is said', () => {
    delete process.env.FASTMON_BENCH_BROKERS;
    expect(benchBrokers()).toEqual(['artemis', 'classic']);
  });

  it('runs on the brokers listed, in their order', () => {
    process.env.FASTMON_BENCH_BROKERS = ' classic , artemis';
    expect(benchBrokers()).toEqual(['classic', 'artemis']);
    process.env.FASTMON_BENCH_BROKERS = 'classic';
    expect(benchBrokers()).toEqual(['classic']);
  });

  it('refuses a broker it does not know, and an empty list', () => {
    process.env.FASTMON_BENCH_BROKERS = 'artemis,rabbitmq';
    expect(() => benchBrokers()).toThrow(/expected artemis and\/or classic/);
    process.env.FASTMON_BENCH_BROKERS = ',';
    expect(() => benchBrokers()).toThrow(/names no broker/);
  });

  it('connects to the STOMP port of the broker in use, unless ACTIVEMQ_PORT says otherwise', () => {
    delete process.env.ACTIVEMQ_PORT;
    useBroker('classic');
    expect([brokerKind(), stompPort()]).toEqual(['classic', 61613]);
    useBroker('artemis');
    expect([brokerKind(), stompPort()]).toEqual(['artemis', 61713]);
    process.env.ACTIVEMQ_PORT = '61715';
    expect(stompPort()).toBe(61715);
  });
});
