// One socket write per event-loop turn for everything stompit sends in that turn.
//
// stompit writes each frame as three chunks (command and headers, body, terminator) and waits for
// each chunk's write callback before the next one, so every frame costs three write syscalls and
// frames leave one at a time. On the 2-core VMs of the testbed that was the largest single cost of
// the agent under load (BENCHMARKS.md). This sits in the transport socket's write(), which is all
// stompit writes through: chunks are collected and acknowledged at once, and one write per turn
// sends them all. Backpressure is kept: while the socket's buffer is over its high-water mark, write
// callbacks wait for 'drain', and stompit stops producing.

import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

type Callback = (err?: Error | null) => void;

export class CoalescingWriter {
  private chunks: Buffer[] = [];
  private waiting: Callback[] = [];
  private scheduled = false;
  private blocked = false;
  /** Socket writes issued; for tests and the bench. */
  flushes = 0;
  /** The socket's own write, kept before coalesceWrites puts this writer in its place. */
  private readonly send: (data: Buffer) => boolean;

  constructor(private readonly socket: Writable) {
    this.send = socket.write.bind(socket);
    socket.on('drain', () => {
      this.blocked = false;
      const callbacks = this.waiting;
      this.waiting = [];
      for (const cb of callbacks) cb();
    });
  }

  write(chunk: string | Buffer, encoding?: BufferEncoding | Callback, cb?: Callback): boolean {
    const callback = typeof encoding === 'function' ? encoding : cb;
    const enc = typeof encoding === 'string' ? encoding : 'utf8';
    this.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, enc) : chunk);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    if (callback) {
      if (this.blocked) this.waiting.push(callback);
      else process.nextTick(callback);
    }
    return !this.blocked;
  }

  /** Writes what is collected now; also called before the socket is ended. */
  flush(): void {
    this.scheduled = false;
    if (this.chunks.length === 0) return;
    const data = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [];
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.flushes++;
    if (!this.send(data)) this.blocked = true;
  }
}

/**
 * Makes `socket` send everything written to it in one event-loop turn as one write. For the
 * transport a stompit connection is given through its documented `connect` option, before stompit
 * has written anything: stompit writes its frames with the transport's write(), the stream contract
 * it documents for a transport (a Duplex), so no stompit internals are involved.
 * test/stompit-adapter.test.ts checks on a real connection that frames leave together.
 */
export function coalesceWrites(socket: Socket): CoalescingWriter {
  // Writes are already gathered here; Nagle's algorithm would only hold the last one back.
  socket.setNoDelay(true);
  const writer = new CoalescingWriter(socket);
  socket.write = writer.write.bind(writer) as typeof socket.write;
  return writer;
}
