import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { type ClientMessage, type Source, stompSource } from '../../src/client/sources/index.js';
import { TestPeer, uniqueTopic } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';

async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('STOMP source of the client', () => {
  let peer: TestPeer;
  let source: Source | null = null;

  beforeEach(async () => {
    peer = await TestPeer.connect();
  });

  afterEach(async () => {
    await source?.close();
    source = null;
    await peer.close();
  });

  /**
   * A SUBSCRIBE has no receipt in our connection, so the test publishes probes until one comes back:
   * from then on the topic subscription is live on the broker and nothing later can be missed.
   */
  async function open(destination: string, msgTypes: string[]) {
    const logs = captureLogs();
    const received: ClientMessage[] = [];
    const probes: ClientMessage[] = [];
    source = stompSource({
      host: inject('stompHost'),
      port: inject('stompPort'),
      user: 'admin',
      password: 'admin',
      useSsl: false,
      caFile: '',
      destination,
      msgTypes,
      logger: logs.logger,
    });
    expect(source.status()).toBe('disconnected');
    await source.start((m) => (m.probe === true ? probes : received).push(m));
    expect(source.status()).toBe('connected');
    const probe = { msg_type: msgTypes[0] ?? 'fastmon_status', probe: true };
    for (let i = 0; i < 100 && probes.length === 0; i++) {
      await peer.publish(destination, probe);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await waitUntil(() => probes.length > 0, 'the subscription probe');
    return { source, received, logs };
  }

  it('delivers tf_file_registered, fastmon_summary and fastmon_status and drops other msg_types and non-JSON bodies', async () => {
    const destination = uniqueTopic('client');
    const { received, logs } = await open(destination, [
      'tf_file_registered',
      'fastmon_summary',
      'fastmon_status',
    ]);
    // Testbed senders put msg_type in the body only; our agent also sets the header.
    await peer.publish(destination, {
      msg_type: 'stf_ready',
      run_id: '100001',
      filename: 'swf.100001.000001.stf',
    });
    await peer.publish(destination, 'not json at all');
    await peer.publish(destination, '[1, 2, 3]');
    await peer.publish(
      destination,
      { msg_type: 'tf_file_registered', run_id: '100001', tf_filename: 'swf.100001.000001.tf.0' },
      { msg_type: 'tf_file_registered' },
    );
    await peer.publish(destination, { msg_type: 'run_imminent', run_id: '100001' });
    await peer.publish(destination, { msg_type: 'fastmon_summary', run_id: '100001', tfs_registered: 7 });
    await peer.publish(destination, { msg_type: 'fastmon_status', state: 'ok' });
    await waitUntil(() => received.length >= 3, 'three messages');
    // A sentinel published last: once it is in, everything before it has been seen or dropped.
    await peer.publish(destination, { msg_type: 'fastmon_status', sentinel: true });
    await waitUntil(() => received.some((m) => m.sentinel === true), 'the sentinel');
    expect(received.map((m) => m.msg_type)).toEqual([
      'tf_file_registered',
      'fastmon_summary',
      'fastmon_status',
      'fastmon_status',
    ]);
    expect(received[0]).toEqual({
      msg_type: 'tf_file_registered',
      run_id: '100001',
      tf_filename: 'swf.100001.000001.tf.0',
    });
    expect(
      logs.find((r) => r.level === 'debug' && String(r.msg).includes('not a JSON object')),
    ).toBeDefined();
  });

  it('delivers every msg_type when none is asked for', async () => {
    const destination = uniqueTopic('client-all');
    const { received } = await open(destination, []);
    await peer.publish(destination, { msg_type: 'stf_ready', run_id: '100001' });
    await peer.publish(destination, { msg_type: 'tf_file_registered', run_id: '100001' });
    await waitUntil(() => received.length === 2, 'both messages');
    expect(received.map((m) => m.msg_type)).toEqual(['stf_ready', 'tf_file_registered']);
  });

  it('describes itself by broker and destination', async () => {
    const destination = uniqueTopic('client-describe');
    const { source } = await open(destination, ['tf_file_registered']);
    expect(source.describe()).toContain(`stomp://${inject('stompHost')}:${inject('stompPort')}`);
    expect(source.describe()).toContain(destination);
    await source.close();
    expect(source.status()).toBe('disconnected');
  });
});
