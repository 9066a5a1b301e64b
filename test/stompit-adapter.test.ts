import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type CoalescingWriter, coalesceWrites } from '../src/messaging/coalesce.js';
import {
  type StompitClient,
  type StompitFrame,
  stompit,
  subscribeWithReceipt,
} from '../src/messaging/stompit.js';
import { brokerAddress, TestPeer, uniqueTopic } from './support/broker.js';

// What fastmon relies on in stompit beyond calling its documented methods (src/messaging/stompit.ts,
// src/messaging/coalesce.ts). A stompit release that changes any of it fails here, on a real broker.

interface Connection {
  client: StompitClient;
  writer: CoalescingWriter;
  /** Every write that reached the socket, as text. */
  wire: string[];
}

const open: StompitClient[] = [];

afterEach(() => {
  for (const client of open.splice(0)) client.destroy();
});

function connect(): Promise<Connection> {
  const { host, port } = brokerAddress();
  const wire: string[] = [];
  let writer: CoalescingWriter | undefined;
  return new Promise((resolve, reject) => {
    stompit.connect(
      {
        host,
        port,
        connectHeaders: {
          host: '/',
          login: 'admin',
          passcode: 'admin',
          'accept-version': '1.2',
          'heart-beat': '0,0',
        },
        connect: (options: net.NetConnectOpts, onConnected: () => void): net.Socket => {
          const socket = net.connect(options, onConnected);
          const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
          socket.write = ((chunk: Buffer) => {
            wire.push(chunk.toString('utf8'));
            return write(chunk);
          }) as typeof socket.write;
          writer = coalesceWrites(socket);
          return socket;
        },
      },
      (err, client) => {
        if (err) return reject(err);
        client.on('error', () => {});
        open.push(client);
        resolve({ client, writer: writer as CoalescingWriter, wire });
      },
    );
  });
}

const readBody = (message: StompitFrame) =>
  new Promise<string>((resolve, reject) =>
    message.readString('utf8', (err, body) => (err ? reject(err) : resolve(body ?? ''))),
  );

describe('the stompit adapter', () => {
  it('confirms a subscription with the broker RECEIPT, after which a message sent to the topic arrives', async () => {
    const { client, wire } = await connect();
    const topic = uniqueTopic('adapter');
    let confirm!: () => void;
    const confirmed = new Promise<void>((resolve) => {
      confirm = resolve;
    });
    let deliver!: (body: string) => void;
    const arrived = new Promise<string>((resolve) => {
      deliver = resolve;
    });
    subscribeWithReceipt(
      client,
      { destination: topic, ack: 'auto' },
      (err, message) => {
        if (!err) void readBody(message).then(deliver);
      },
      () => confirm(),
    );
    await confirmed;
    const peer = await TestPeer.connect();
    await peer.publish(topic, { n: 1 });
    expect(await arrived).toBe('{"n":1}');
    await peer.close();
    // The frame fastmon always sent: `receipt` before the `id` stompit adds.
    expect(wire.join('')).toMatch(
      new RegExp(
        `SUBSCRIBE\\ndestination:${topic.replaceAll('.', '\\.')}\\nack:auto\\nreceipt:\\d+\\nid:\\d+\\n\\n\\0`,
      ),
    );
    // sendFrame is the client's own again, not the one wrapped for the SUBSCRIBE.
    expect(Object.hasOwn(client, 'sendFrame')).toBe(false);
  });

  it('keeps publish receipts working beside subscription receipts on the same numbering', async () => {
    const { client } = await connect();
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      subscribeWithReceipt(
        client,
        { destination: uniqueTopic('adapter'), ack: 'auto' },
        () => {},
        () => order.push('subscribe'),
      );
      const frame = client.send(
        { destination: uniqueTopic('adapter') },
        {
          onReceipt: () => {
            order.push('send');
            resolve();
          },
        },
      );
      frame.write('{}');
      frame.end();
    });
    expect(order).toEqual(['subscribe', 'send']);
  });

  it('sends the frames written in one turn in one socket write, each confirmed by the broker', async () => {
    const { client, writer, wire } = await connect();
    const before = writer.flushes;
    const topic = uniqueTopic('adapter');
    const receipts = Array.from(
      { length: 20 },
      (_, i) =>
        new Promise<void>((resolve) => {
          const frame = client.send({ destination: topic }, { onReceipt: resolve });
          frame.write(`{"n":${i}}`);
          frame.end();
        }),
    );
    await Promise.all(receipts);
    expect(writer.flushes - before).toBe(1);
    const sends = wire.filter((w) => w.includes('SEND\n'));
    expect(sends).toHaveLength(1);
    expect(sends[0]?.match(/SEND\n/g)).toHaveLength(20);
  });

  it('throws at once when stompit stops sending SUBSCRIBE through sendFrame', () => {
    const sent: string[] = [];
    const changed = {
      sendFrame: (command: string) => {
        sent.push(command);
        return { write: () => true, end: () => {} };
      },
      subscribe: () => ({ unsubscribe: () => {} }),
    } as unknown as StompitClient;
    const own = changed.sendFrame;
    expect(() =>
      subscribeWithReceipt(
        changed,
        { destination: '/topic/t', ack: 'auto' },
        () => {},
        () => {},
      ),
    ).toThrow(/stompit internals changed/);
    expect(changed.sendFrame).toBe(own);
    expect(sent).toEqual([]);
  });
});
