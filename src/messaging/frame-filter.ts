// Inbound STOMP bytes cut down to FRAME_LIMITS before stompit parses them, with the cut named in a header.

import type { Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { FRAME_LIMITS } from './limits.js';

/** Added to a frame the filter cut; its value says what was cut and which limit applies. */
export const CUT_HEADER = 'fastmon-frame-cut';

/** Headers STOMP itself needs (ack, routing, body framing, errors): never dropped, only shortened. */
const PROTOCOL_HEADERS = new Set([
  'message-id',
  'subscription',
  'ack',
  'destination',
  'content-length',
  'content-type',
  'receipt-id',
  'message',
  'version',
  'heart-beat',
  'server',
  'session',
]);

const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;

export interface FrameFilterLimits {
  maxHeaderLineBytes: number;
  maxHeaders: number;
  maxHeaderBytes: number;
}

type State = 'between' | 'headers' | 'body-length' | 'body-nul';

/**
 * A frame the broker delivers can exceed what the agent is willing to parse (a producer's 2 MB
 * header, 5,000 headers). Rather than let stompit's parser fail, which drops the connection and
 * brings the same frame back on the next one, this stream shortens such a frame: a header line
 * over the line limit is dropped (a protocol header is cut to the limit instead), and past the
 * header count or total size only protocol headers are kept. The frame then parses, and the
 * CUT_HEADER it carries lets the agent refuse that one message, acknowledge it and dead-letter
 * it. Frames within the limits pass byte for byte. Bodies are not touched here: their bound is
 * applied while reading them (stomp.ts).
 */
export class FrameFilter extends Transform {
  private state: State = 'between';
  private parts: Buffer[] = [];
  private lineBytes = 0;
  /** Bytes of the current line as received, beyond what was kept. */
  private lineTotal = 0;
  private isCommand = true;
  private headers = 0;
  private headerBytes = 0;
  private droppedForCount = 0;
  private droppedForBytes = 0;
  private cuts: string[] = [];
  private contentLength: number | null = null;
  private bodyLeft = 0;
  /** Frames cut so far (for tests and logs). */
  cutFrames = 0;

  constructor(private readonly limits: FrameFilterLimits = FRAME_LIMITS) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const out: Buffer[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === 'between') {
        // Heart-beats and the EOLs that may follow a frame's NUL.
        const start = i;
        while (i < n && (chunk[i] === LF || chunk[i] === CR)) i++;
        if (i > start) out.push(chunk.subarray(start, i));
        if (i < n) this.beginFrame();
      } else if (this.state === 'headers') {
        const nl = chunk.indexOf(LF, i);
        const end = nl === -1 ? n : nl;
        this.append(chunk.subarray(i, end));
        i = end;
        if (nl !== -1) {
          i = nl + 1;
          this.endLine(out);
        }
      } else if (this.state === 'body-length') {
        const take = Math.min(this.bodyLeft, n - i);
        out.push(chunk.subarray(i, i + take));
        i += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) this.state = 'between';
      } else {
        const nul = chunk.indexOf(0, i);
        const end = nul === -1 ? n : nul + 1;
        out.push(chunk.subarray(i, end));
        i = end;
        if (nul !== -1) this.state = 'between';
      }
    }
    if (out.length > 0) this.push(out.length === 1 ? out[0] : Buffer.concat(out));
    callback();
  }

  private beginFrame(): void {
    this.state = 'headers';
    this.isCommand = true;
    this.headers = 0;
    this.headerBytes = 0;
    this.droppedForCount = 0;
    this.droppedForBytes = 0;
    this.cuts = [];
    this.contentLength = null;
  }

  /** Keeps at most the line limit of the current line; counts the rest. */
  private append(part: Buffer): void {
    this.lineTotal += part.length;
    const room = this.limits.maxHeaderLineBytes - this.lineBytes;
    if (room <= 0 || part.length === 0) return;
    const kept = part.length <= room ? part : part.subarray(0, room);
    // The chunk is copied only when the line spans chunks; most lines end where they start.
    this.parts.push(kept);
    this.lineBytes += kept.length;
  }

  private endLine(out: Buffer[]): void {
    let line = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    const over = this.lineTotal > this.limits.maxHeaderLineBytes;
    const total = this.lineTotal;
    this.parts = [];
    this.lineBytes = 0;
    this.lineTotal = 0;
    const crlf = !over && line.length > 0 && line[line.length - 1] === CR;
    if (crlf) line = line.subarray(0, line.length - 1);
    if (this.isCommand) {
      this.isCommand = false;
      out.push(line, crlf ? CRLF : EOL);
      return;
    }
    if (line.length === 0) {
      this.endHeaders(out, crlf);
      return;
    }
    const colon = line.indexOf(0x3a);
    const name = colon === -1 ? '' : line.subarray(0, colon).toString('utf8');
    if (name === CUT_HEADER) return; // only the filter says a frame was cut
    const protocol = PROTOCOL_HEADERS.has(name);
    if (over) {
      const label = `header ${describe(name)} of ${total} bytes over the ${this.limits.maxHeaderLineBytes}-byte line limit`;
      if (!protocol || colon === -1) {
        this.cuts.push(`${label} dropped`);
        return;
      }
      this.cuts.push(`${label} shortened`);
      line = withoutDanglingEscape(line);
    }
    this.headers++;
    this.headerBytes += line.length + 1;
    if (!protocol) {
      if (this.headers > this.limits.maxHeaders) {
        this.droppedForCount++;
        return;
      }
      if (this.headerBytes > this.limits.maxHeaderBytes) {
        this.droppedForBytes++;
        return;
      }
    }
    if (name === 'content-length' && this.contentLength === null) {
      const value = Number.parseInt(line.subarray(colon + 1).toString('latin1'), 10);
      if (Number.isSafeInteger(value) && value >= 0) this.contentLength = value;
    }
    out.push(line, crlf ? CRLF : EOL);
  }

  private endHeaders(out: Buffer[], crlf: boolean): void {
    if (this.droppedForCount > 0)
      this.cuts.push(
        `${this.droppedForCount} headers past the ${this.limits.maxHeaders}-header limit dropped`,
      );
    if (this.droppedForBytes > 0)
      this.cuts.push(
        `${this.droppedForBytes} headers past the ${this.limits.maxHeaderBytes}-byte header size limit dropped`,
      );
    if (this.cuts.length > 0) {
      this.cutFrames++;
      out.push(Buffer.from(`${CUT_HEADER}:${this.cuts.slice(0, 4).join('; ')}\n`, 'utf8'));
    }
    out.push(crlf ? CRLF : EOL);
    if (this.contentLength !== null) {
      // The body, then its NUL.
      this.bodyLeft = this.contentLength + 1;
      this.state = 'body-length';
    } else {
      this.state = 'body-nul';
    }
  }
}

const EOL = Buffer.from('\n');
const CRLF = Buffer.from('\r\n');

/** A header name as it can appear in CUT_HEADER's value: short, and free of STOMP escapes. */
function describe(name: string): string {
  const safe = name.slice(0, 40).replace(/[^A-Za-z0-9._-]/g, '?');
  return safe === '' ? '(unnamed)' : safe;
}

/** A line cut in the middle of a `\x` escape would not parse; drop the lone backslash. */
function withoutDanglingEscape(line: Buffer): Buffer {
  let end = line.length;
  let slashes = 0;
  while (end - slashes - 1 >= 0 && line[end - slashes - 1] === BACKSLASH) slashes++;
  if (slashes % 2 === 1) end--;
  return line.subarray(0, end);
}

/**
 * Makes `socket` hand its bytes to stompit through a FrameFilter. stompit 1.0 reads its
 * transport with `transportSocket.pipe(incomingFrameStream)`, once, right after the transport
 * factory (its documented `connect` option) returns; `pipe` is redirected through the filter on
 * this one socket. test/frame-filter.test.ts fails if stompit stops reading that way.
 */
export function filterInbound(socket: Socket, limits: FrameFilterLimits = FRAME_LIMITS): FrameFilter {
  const filter = new FrameFilter(limits);
  const pipe = socket.pipe.bind(socket);
  socket.pipe = (<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T => {
    pipe(filter);
    return filter.pipe(destination, options);
  }) as typeof socket.pipe;
  return filter;
}
