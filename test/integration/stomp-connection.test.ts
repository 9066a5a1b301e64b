import type { AddressInfo } from 'node:net';
import { createServer, type Server, Socket } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { StompConnection } from '../../src/messaging/stomp.js';
import { brokerAddress, TestPeer, uniqueTopic } from '../support/broker.js';
import { captureLogs } from '../support/logs.js';

/**
 * A TCP proxy between the agent and ActiveMQ, so a test can cut the connection (as a broker
 * restart or a network fault would) or silence it (as a hung broker would) without touching
 * the broker that other test files share.
 */
class BrokerProxy {
  private readonly sockets = new Set<Socket>();
  private silent: 'both' | 'from-broker' | false = false;
  private constructor(private readonly server: Server) {}

  static async start(): Promise<BrokerProxy> {
    const { host, port } = brokerAddress();
    let proxy: BrokerProxy | null = null;
    const server = createServer((client) => {
      const upstream = new Socket();
      upstream.connect(port, host);
      proxy?.sockets.add(client).add(upstream);
      client.on('data', (d) => {
        if (proxy?.silent !== 'both') upstream.write(d);
      });
      upstream.on('data', (d) => {
        if (!proxy?.silent) client.write(d);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    proxy = new BrokerProxy(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Drops every connection, like a broker restart. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /**
   * Stops forwarding bytes while keeping the sockets open: 'from-broker' is a hung broker that
   * still reads (so it keeps the connection), 'both' a dead path.
   */
  silence(mode: 'both' | 'from-broker' | false): void {
    this.silent = mode;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function setup(heartbeatMs = 0) {
  const proxy = await BrokerProxy.start();
  const logs = captureLogs();
  const connection = new StompConnection({
    host: '127.0.0.1',
    port: proxy.port,
    user: 'admin',
    password: 'admin',
    useSsl: false,
    caFile: '',
    heartbeatMs,
    clientId: `fastmon-test-${Math.random().toString(36).slice(2)}`,
    reconnectInitialMs: 50,
    reconnectMaxMs: 500,
    connectTimeoutMs: 500,
    logger: logs.logger,
  });
  const topic = uniqueTopic('stomp');
  const received: string[] = [];
  connection.subscribe({ destination: topic, ack: 'auto' }, (m) => received.push(m.body));
  connection.start();
  await connection.waitConnected(5000);
  const peer = await TestPeer.connect();
  cleanups.push(
    () => peer.close(),
    () => connection.close(),
    () => proxy.close(),
  );
  return { proxy, connection, topic, received, peer, logs };
}

async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Publishes until the subscription sees one message: SUBSCRIBE is asynchronous on the broker side. */
async function deliverOne(peer: TestPeer, topic: string, received: string[], body: string): Promise<void> {
  const before = received.length;
  const deadline = Date.now() + 10_000;
  while (received.length === before) {
    if (Date.now() > deadline) throw new Error(`no delivery of ${body}`);
    await peer.publish(topic, body);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the STOMP connection', () => {
  it('reconnects after the connection drops and resubscribes, so messages flow again', async () => {
    const { proxy, connection, topic, received, peer, logs } = await setup();
    await deliverOne(peer, topic, received, 'before');
    proxy.cut();
    await until(() => !connection.connected, 'the drop to be noticed');
    await until(() => connection.connected, 'the reconnect');
    await deliverOne(peer, topic, received, 'after');
    expect(received.at(-1)).toBe('after');
    expect(connection.reconnects).toBe(1);
    expect(logs.find((r) => r.msg === 'broker connection lost or refused; reconnecting')).toBeDefined();
  });

  it('keeps retrying with backoff while the broker is unreachable', async () => {
    const { proxy, connection, topic, received, peer } = await setup();
    proxy.silence('both');
    proxy.cut();
    // While silenced, new connections get no CONNECTED frame and time out; attempts keep coming.
    await new Promise((r) => setTimeout(r, 1500));
    expect(connection.connected).toBe(false);
    proxy.silence(false);
    await until(() => connection.connected, 'the reconnect after the outage', 15_000);
    await deliverOne(peer, topic, received, 'after outage');
  });

  it('detects a silent broker through missed heart-beats and reconnects', async () => {
    const { proxy, connection, topic, received, peer, logs } = await setup(1000);
    await deliverOne(peer, topic, received, 'before');
    proxy.silence('from-broker');
    await until(() => !connection.connected, 'heart-beat loss to be detected', 10_000);
    expect(logs.text()).toMatch(/connection timed out/);
    proxy.silence(false);
    proxy.cut();
    await until(() => connection.connected, 'the reconnect', 15_000);
    await deliverOne(peer, topic, received, 'after');
  });

  it('holds publishes made during an outage until the reconnect, with one listener for all of them', async () => {
    const { proxy, connection, peer } = await setup();
    const topic = uniqueTopic('outage-publish');
    const seen = await peer.collect(topic);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      proxy.silence('both');
      proxy.cut();
      await until(() => !connection.connected, 'the drop');
      const publishes = Array.from({ length: 40 }, (_, i) =>
        connection.publish(topic, JSON.stringify({ msg_type: 'x', i }), { msg_type: 'x' }),
      );
      expect(connection.listenerCount('connected')).toBe(1);
      proxy.silence(false);
      await Promise.all(publishes);
      await seen.waitFor((c) => c.messages.length === 40, 10_000, 'the 40 messages published in the outage');
      await new Promise((r) => setImmediate(r)); // a warning is emitted on the next tick
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('confirms a publish only with the broker receipt, and fails it when there is no broker', async () => {
    const { connection, proxy, peer } = await setup();
    const topic = uniqueTopic('publish');
    const seen = await peer.collect(topic);
    await connection.publish(topic, JSON.stringify({ msg_type: 'x' }), { msg_type: 'x' });
    await seen.waitFor((c) => c.messages.length === 1, 5000, 'the published message');
    expect(seen.messages[0]?.headers.msg_type).toBe('x');
    await proxy.close();
    await until(() => !connection.connected, 'the drop');
    const quick = new StompConnection({
      host: '127.0.0.1',
      port: 1,
      user: 'admin',
      password: 'admin',
      useSsl: false,
      caFile: '',
      heartbeatMs: 0,
      clientId: 'x',
      reconnectMaxMs: 100,
      publishTimeoutMs: 300,
      logger: captureLogs().logger,
    });
    quick.start();
    await expect(quick.publish(topic, '{}')).rejects.toThrow(/cannot publish to .*: no STOMP connection/);
    await quick.close();
  });

  it('connects over TLS verified by the CA bundle, and refuses a broker it cannot verify without falling back', async () => {
    const tlsPort = inject('stompTlsPort');
    const ca = inject('stompTlsCa');
    expect(
      tlsPort,
      'the STOMP+TLS connector on 127.0.0.1:61614 (test/setup/activemq.sh sets it up)',
    ).toBeGreaterThan(0);
    const tls = (caFile: string, logs = captureLogs()) =>
      new StompConnection({
        host: '127.0.0.1',
        port: tlsPort,
        user: 'admin',
        password: 'admin',
        useSsl: true,
        caFile,
        heartbeatMs: 0,
        clientId: `fastmon-tls-${Math.random().toString(36).slice(2)}`,
        reconnectInitialMs: 100,
        reconnectMaxMs: 200,
        connectTimeoutMs: 1000,
        logger: logs.logger,
      });
    const verified = tls(ca);
    verified.start();
    cleanups.push(() => verified.close());
    await verified.waitConnected(10_000);
    const peer = await TestPeer.connect();
    cleanups.push(() => peer.close());
    const topic = uniqueTopic('tls');
    const seen = await peer.collect(topic);
    await verified.publish(topic, '{"msg_type":"over_tls"}');
    await seen.waitFor((c) => c.messages.length === 1, 5000, 'the message sent over TLS');

    const logs = captureLogs();
    // No CA bundle: the system CAs do not know the test CA, so the broker must be refused.
    const unverified = tls('', logs);
    unverified.start();
    cleanups.push(() => unverified.close());
    await until(() => /self-signed certificate/i.test(logs.text()), 'the certificate to be refused');
    expect(unverified.connected).toBe(false);
  });
});
