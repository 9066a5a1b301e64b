import { afterEach, describe, expect, it } from 'vitest';
import type { FrameFilterLimits } from '../../src/messaging/frame-filter.js';
import { FRAME_LIMITS } from '../../src/messaging/limits.js';
import { type InboundMessage, StompConnection } from '../../src/messaging/stomp.js';
import { brokerAddress, TestPeer, uniqueTopic } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function setup(options: { frameLimits?: FrameFilterLimits; maxBodyBytes?: number } = {}) {
  const { host, port } = brokerAddress();
  const logs = captureLogs();
  const connection = new StompConnection({
    host,
    port,
    user: 'admin',
    password: 'admin',
    useSsl: false,
    caFile: '',
    heartbeatMs: 0,
    clientId: `fastmon-test-${Math.random().toString(36).slice(2)}`,
    reconnectInitialMs: 50,
    reconnectMaxMs: 500,
    logger: logs.logger,
    ...options,
  });
  let drops = 0;
  connection.on('disconnected', () => drops++);
  const topic = uniqueTopic('limits');
  const received: InboundMessage[] = [];
  connection.subscribe({ destination: topic, ack: 'client-individual' }, (m) => {
    received.push(m);
    m.ack();
  });
  connection.start();
  await connection.waitConnected(5000);
  expect(await connection.waitSubscribed(5000)).toBe(true);
  const peer = await TestPeer.connect();
  cleanups.push(
    () => peer.close(),
    () => connection.close(),
  );
  const next = async (count: number) => {
    const deadline = Date.now() + 10_000;
    while (received.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${received.length} of ${count} messages arrived`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return received[count - 1] as InboundMessage;
  };
  return { connection, topic, peer, next, drops: () => drops };
}

function headers(count: number, valueBytes = 8): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`x-h${i}`, 'v'.repeat(valueBytes)]));
}

describe('STOMP frame limits against the real broker', () => {
  it('takes the frames producers send, up to what ActiveMQ Classic accepts, without a drop or a refusal', async () => {
    const { topic, peer, next, drops, connection } = await setup();
    // stompit's defaults refused all three (1,024-byte lines, 64 headers) and dropped the connection.
    await peer.publish(topic, '{"n":1}', { 'x-big': 'b'.repeat(2048) });
    await peer.publish(topic, '{"n":2}', headers(70));
    // Classic's own ceiling for a SEND: header lines of 10 KiB and 1,000 headers.
    await peer.publish(topic, '{"n":3}', { ...headers(990), 'x-wide': 'w'.repeat(10_000) });
    for (let n = 1; n <= 3; n++) {
      const m = await next(n);
      expect(m.body).toBe(`{"n":${n}}`);
      expect(m.refusal).toBeUndefined();
    }
    expect((await next(1)).headers['x-big']).toHaveLength(2048);
    expect(Object.keys((await next(3)).headers).length).toBeGreaterThan(990);
    expect(drops()).toBe(0);
    expect(connection.reconnects).toBe(0);
  });

  it('refuses an over-limit frame alone, with its message id and the limit, and keeps the connection', async () => {
    const limits = { maxHeaderLineBytes: 1024, maxHeaders: 20, maxHeaderBytes: 8192 };
    const { topic, peer, next, drops, connection } = await setup({ frameLimits: limits, maxBodyBytes: 4096 });
    await peer.publish(topic, '{"n":1}', { 'x-big': 'b'.repeat(4000) });
    await peer.publish(topic, '{"n":2}', headers(40));
    await peer.publish(topic, `{"pad":"${'p'.repeat(10_000)}"}`);
    await peer.publish(topic, '{"n":4}', { 'x-small': 's'.repeat(500) });

    const long = await next(1);
    expect(long.refusal).toMatchObject({ code: 'MESSAGE_HEADERS_TOO_LARGE' });
    expect(long.refusal?.reason).toMatch(/header x-big of \d+ bytes over the 1024-byte line limit dropped/);
    expect(long.messageId).not.toBe('');
    expect(long.body).toBe('{"n":1}');
    const many = await next(2);
    expect(many.refusal?.code).toBe('MESSAGE_HEADERS_TOO_LARGE');
    expect(many.refusal?.reason).toMatch(/headers past the 20-header limit dropped/);
    const big = await next(3);
    expect(big.refusal).toEqual({
      code: 'MESSAGE_TOO_LARGE',
      reason: `body of ${10_010} bytes over the 4096-byte limit`,
    });
    expect(big.body).toHaveLength(4096);
    const fine = await next(4);
    expect(fine.refusal).toBeUndefined();
    expect(fine.body).toBe('{"n":4}');
    expect(drops()).toBe(0);
    expect(connection.reconnects).toBe(0);
  });

  it('has limits above what ActiveMQ Classic lets a producer send', () => {
    // The brokers' own SEND limits (measured against ActiveMQ Classic 5.17: "The maximum header
    // length was exceeded" past 10 KiB, "The maximum number of headers was exceeded" past 1,000).
    expect(FRAME_LIMITS.maxHeaderLineBytes).toBeGreaterThan(10 * 1024);
    expect(FRAME_LIMITS.maxHeaders).toBeGreaterThan(1000 + 16);
  });
});
