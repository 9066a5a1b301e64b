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
    // Bytes passed on unchanged are sent as slices of the chunk (the whole chunk, for frames within
    // the limits: no copy); `kept` is where the run of unchanged bytes not yet sent starts.
    const out: Buffer[] = [];
    let kept = 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === 'between') {
        // Heart-beats and the EOLs that may follow a frame's NUL.
        while (i < n && (chunk[i] === LF || chunk[i] === CR)) i++;
        if (i < n) this.beginFrame();
      } else if (this.state === 'headers') {
        const nl = chunk.indexOf(LF, i);
        if (this.lineTotal === 0 && nl !== -1 && nl - i <= this.limits.maxHeaderLineBytes) {
          // The usual case: a whole line, within the line limit, in this chunk.
          const verdict = this.judge(chunk, i, nl);
          if (verdict !== 'keep') {
            if (i > kept) out.push(chunk.subarray(kept, i));
            if (verdict === 'mark') out.push(this.marker());
            kept = verdict === 'mark' ? i : nl + 1;
          }
          i = nl + 1;
        } else {
          // A line that spans chunks or is over the limit: gathered (up to the limit), then judged.
          if (i > kept) out.push(chunk.subarray(kept, i));
          const end = nl === -1 ? n : nl;
          this.append(chunk.subarray(i, end));
          i = nl === -1 ? n : nl + 1;
          if (nl !== -1) this.endLine(out);
          kept = i;
        }
      } else if (this.state === 'body-length') {
        const take = Math.min(this.bodyLeft, n - i);
        i += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) this.state = 'between';
      } else {
        const nul = chunk.indexOf(0, i);
        i = nul === -1 ? n : nul + 1;
        if (nul !== -1) this.state = 'between';
      }
    }
    if (kept === 0 && out.length === 0) this.push(chunk);
    else {
      if (n > kept) out.push(chunk.subarray(kept, n));
      if (out.length > 0) this.push(out.length === 1 ? out[0] : Buffer.concat(out));
    }
    callback();
  }

  /**
   * A whole line within the line limit, at chunk[start, nl): 'keep' it as it is, 'drop' it, or
   * 'mark': it is the blank line ending the headers of a cut frame, which gets CUT_HEADER first.
   */
  private judge(chunk: Buffer, start: number, nl: number): 'keep' | 'drop' | 'mark' {
    const end = nl > start && chunk[nl - 1] === CR ? nl - 1 : nl;
    if (this.isCommand) {
      this.isCommand = false;
      return 'keep';
    }
    if (end === start) return this.endHeaders() ? 'mark' : 'keep';
    if (chunk[start] === CUT_PREFIX[0] && startsWith(chunk, start, end, CUT_PREFIX)) return 'drop';
    const name = () => {
      const colon = chunk.indexOf(0x3a, start);
      return colon === -1 || colon > end ? '' : chunk.toString('utf8', start, colon);
    };
    if (!this.admit(end - start, name)) return 'drop';
    if (
      this.contentLength === null &&
      chunk[start] === LENGTH_PREFIX[0] &&
      startsWith(chunk, start, end, LENGTH_PREFIX)
    )
      this.noteLength(chunk.toString('latin1', start + LENGTH_PREFIX.length, end));
    return 'keep';
  }

  /** Counts a header line against the count and size limits; false when it is to be dropped. */
  private admit(bytes: number, name: () => string): boolean {
    this.headers++;
    this.headerBytes += bytes + 1;
    if (this.headers <= this.limits.maxHeaders && this.headerBytes <= this.limits.maxHeaderBytes) return true;
    if (PROTOCOL_HEADERS.has(name())) return true;
    if (this.headers > this.limits.maxHeaders) this.droppedForCount++;
    else this.droppedForBytes++;
    return false;
  }

  private noteLength(value: string): void {
    const length = Number.parseInt(value, 10);
    if (Number.isSafeInteger(length) && length >= 0) this.contentLength = length;
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

  /** Judges a line gathered by append(): kept (maybe shortened) into `out`, or dropped. */
  private endLine(out: Buffer[]): void {
    let line = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    const over = this.lineTotal > this.limits.maxHeaderLineBytes;
    const total = this.lineTotal;
    this.parts = [];
    this.lineBytes = 0;
    this.lineTotal = 0;
    const crlf = !over && line.length > 0 && line[line.length - 1] === CR;
    if (crlf) line = line.subarray(0, line.length - 1);
    const eol = crlf ? CRLF : EOL;
    if (this.isCommand) {
      this.isCommand = false;
      out.push(line, eol);
      return;
    }
    if (line.length === 0) {
      if (this.endHeaders()) out.push(this.marker());
      out.push(eol);
      return;
    }
    const colon = line.indexOf(0x3a);
    const name = colon === -1 ? '' : line.subarray(0, colon).toString('utf8');
    if (name === CUT_HEADER) return; // only the filter says a frame was cut
    if (over) {
      const label = `header ${describe(name)} of ${total} bytes over the ${this.limits.maxHeaderLineBytes}-byte line limit`;
      if (!PROTOCOL_HEADERS.has(name) || colon === -1) {
        this.cuts.push(`${label} dropped`);
        return;
      }
      this.cuts.push(`${label} shortened`);
      line = withoutDanglingEscape(line);
    }
    if (!this.admit(line.length, () => name)) return;
    if (name === 'content-length' && this.contentLength === null)
      this.noteLength(line.subarray(colon + 1).toString('latin1'));
    out.push(line, eol);
  }

  /** The end of a frame's headers: the body comes next. True when the frame was cut. */
  private endHeaders(): boolean {
    if (this.droppedForCount > 0)
      this.cuts.push(
        `${this.droppedForCount} headers past the ${this.limits.maxHeaders}-header limit dropped`,
      );
    if (this.droppedForBytes > 0)
      this.cuts.push(
        `${this.droppedForBytes} headers past the ${this.limits.maxHeaderBytes}-byte header size limit dropped`,
      );
    if (this.contentLength !== null) {
      // The body, then its NUL.
      this.bodyLeft = this.contentLength + 1;
      this.state = 'body-length';
    } else {
      this.state = 'body-nul';
    }
    if (this.cuts.length === 0) return false;
    this.cutFrames++;
    return true;
  }

  /** The header that says what was cut from the current frame. */
  private marker(): Buffer {
    return Buffer.from(`${CUT_HEADER}:${this.cuts.slice(0, 4).join('; ')}\n`, 'utf8');
  }
}

const EOL = Buffer.from('\n');
const CRLF = Buffer.from('\r\n');
const CUT_PREFIX = Buffer.from(`${CUT_HEADER}:`);
const LENGTH_PREFIX = Buffer.from('content-length:');

function startsWith(chunk: Buffer, start: number, end: number, prefix: Buffer): boolean {
  return (
    end - start >= prefix.length &&
    chunk.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0
  );
}

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
