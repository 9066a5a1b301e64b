// One socket write per event-loop turn for everything stompit sends in that turn.
//
// stompit writes each frame as three chunks (command and headers, body, terminator) and waits for
// each chunk's write callback before the next one, so every frame costs three write syscalls and
// frames leave one at a time. On the 2-core VMs of the testbed that was the largest single cost of
// the agent under load (BENCHMARKS.md). This sits between stompit's outgoing frame stream and the
// transport socket: chunks are collected and acknowledged at once, and one write per turn sends
// them all. Backpressure is kept: while the socket's buffer is over its high-water mark, write
// callbacks wait for 'drain', and stompit stops producing.

import type { Writable } from 'node:stream';

type Callback = (err?: Error | null) => void;

export class CoalescingWriter {
  private chunks: Buffer[] = [];
  private waiting: Callback[] = [];
  private scheduled = false;
  private blocked = false;
  /** Socket writes issued; for tests and the bench. */
  flushes = 0;

  constructor(private readonly socket: Writable) {
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
    if (!this.socket.write(data)) this.blocked = true;
  }
}

/**
 * Puts a CoalescingWriter in front of the transport socket of a stompit client that has not
 * written anything yet (call it right after stompit.connect returns). Relies on two stompit
 * 1.0 internals, checked here so a different stompit fails loudly instead of silently.
 */
export function coalesceStompitWrites(client: unknown): CoalescingWriter {
  const output = (client as { _output?: { _destination?: Writable } })._output;
  const socket = output?._destination;
  if (!output || !socket || typeof socket.write !== 'function') {
    throw new Error('stompit internals changed: client._output._destination is not a stream');
  }
  // Writes are already gathered here; Nagle's algorithm would only hold the last one back.
  (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  const writer = new CoalescingWriter(socket);
  (output as { _destination: unknown })._destination = writer;
  return writer;
}
