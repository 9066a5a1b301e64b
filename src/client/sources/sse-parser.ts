// Incremental text/event-stream parser (WHATWG "interpreting an event stream"), fed chunk by chunk.

export interface SseEvent {
  /** The `event:` field; 'message' when the server sent none. */
  event: string;
  data: string;
}

/** An event larger than this is a broken or hostile stream, not a testbed message. */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/**
 * Pure and synchronous so it can be tested on split chunks without a server. Decoding is the
 * caller's (a streaming TextDecoder), so a UTF-8 character split across chunks is never broken.
 * `id:` and `retry:` are ignored: swf-monitor sends neither and cannot replay (docs/testbed-interface.md, "The SSE relay").
 */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private dataChars = 0;

  /** Feeds decoded text; returns the events it completed. Throws a RangeError on an oversized event. */
  push(text: string): SseEvent[] {
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const lf = this.buffer.indexOf('\n', start);
      const cr = this.buffer.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
      } else if (lf >= 0) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      const event = this.line(this.buffer.slice(start, end));
      if (event) events.push(event);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length + this.dataChars > MAX_EVENT_CHARS) {
      throw new RangeError(`an event-stream event exceeds ${MAX_EVENT_CHARS} characters`);
    }
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null; // comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') {
      this.data.push(value);
      this.dataChars += value.length + 1;
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    const event = this.event === '' ? 'message' : this.event;
    const hasData = this.data.length > 0;
    const data = this.data.join('\n');
    this.event = '';
    this.data = [];
    this.dataChars = 0;
    // An event with no data line is not dispatched (the spec's rule, which EventSource follows too).
    return hasData ? { event, data } : null;
  }
}
