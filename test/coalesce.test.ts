import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CoalescingWriter } from '../src/messaging/coalesce.js';

/** A socket stand-in that records each write it gets and can be told to report a full buffer. */
function recordingSocket(highWaterMark = 1 << 20) {
  const writes: string[] = [];
  const socket = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk.toString());
      // Held until released, like a socket whose peer is not reading.
      held.push(cb);
    },
  });
  const held: ((err?: Error) => void)[] = [];
  const release = () => {
    for (const cb of held.splice(0)) cb();
  };
  return { socket, writes, release };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('CoalescingWriter', () => {
  it('sends everything written in one turn as one socket write, in order', async () => {
    const { socket, writes, release } = recordingSocket();
    const writer = new CoalescingWriter(socket);
    const acknowledged: number[] = [];
    for (let i = 0; i < 20; i++) {
      writer.write(`SEND\ndestination:/topic/t\n\n`, 'utf8', () => acknowledged.push(i));
      writer.write(Buffer.from(`{"n":${i}}`));
      writer.write('\0\n', 'utf8');
    }
    await turn();
    release();
    expect(writes).toHaveLength(1);
    expect(writer.flushes).toBe(1);
    const frames = (writes[0] as string).split('\0\n').filter(Boolean);
    expect(frames).toHaveLength(20);
    expect(frames[7]).toBe('SEND\ndestination:/topic/t\n\n{"n":7}');
    expect(acknowledged).toEqual([...Array(20).keys()]);
    writer.write('next', 'utf8');
    await turn();
    expect(writes).toEqual([writes[0], 'next']);
  });

  it('holds write callbacks while the socket is over its high-water mark, until drain', async () => {
    const { socket, release } = recordingSocket(8);
    const writer = new CoalescingWriter(socket);
    writer.write('a frame longer than eight bytes');
    await turn(); // flushed; the socket now reports a full buffer
    let called = false;
    const accepted = writer.write('more', 'utf8', () => {
      called = true;
    });
    expect(accepted).toBe(false);
    await turn();
    expect(called).toBe(false);
    release(); // the socket takes the first write, then the second
    await turn();
    release();
    await turn();
    expect(called).toBe(true);
  });

  it('drops what is left when the socket is already destroyed instead of throwing', async () => {
    const { socket } = recordingSocket();
    const writer = new CoalescingWriter(socket);
    writer.write('late');
    socket.destroy();
    await turn();
    expect(writer.flushes).toBe(0);
  });
});
