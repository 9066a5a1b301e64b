import { describe, expect, it } from 'vitest';
import { CUT_HEADER, FrameFilter, type FrameFilterLimits } from '../src/messaging/frame-filter.js';

const SMALL: FrameFilterLimits = { maxHeaderLineBytes: 64, maxHeaders: 5, maxHeaderBytes: 200 };

/** Feeds `input` to a filter in chunks of `size` bytes (0: all at once) and returns what came out. */
async function run(input: Buffer | string, limits: FrameFilterLimits = SMALL, size = 0): Promise<string> {
  const filter = new FrameFilter(limits);
  const out: Buffer[] = [];
  filter.on('data', (b: Buffer) => out.push(b));
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
  const step = size > 0 ? size : bytes.length;
  for (let i = 0; i < bytes.length; i += step) filter.write(bytes.subarray(i, i + step));
  await new Promise<void>((resolve) => filter.end(resolve));
  return Buffer.concat(out).toString('utf8');
}

function message(headers: string[], body: string, contentLength = false): string {
  const all = ['message-id:ID-1', 'subscription:1', 'destination:/topic/t', ...headers];
  if (contentLength) all.push(`content-length:${Buffer.byteLength(body)}`);
  return `MESSAGE\n${all.join('\n')}\n\n${body}\0\n`;
}

describe('the inbound frame filter', () => {
  it('passes frames within the limits byte for byte, however the bytes are split', async () => {
    const stream =
      '\n' +
      message(['a:1', 'b:2'], '{"msg_type":"stf_ready"}') +
      '\r\n' +
      message([], 'with\0nul\nand newline', true) +
      'RECEIPT\r\nreceipt-id:7\r\n\r\n\0';
    for (const size of [0, 1, 2, 3, 7, 64]) expect(await run(stream, SMALL, size)).toBe(stream);
  });

  it('drops a header line over the line limit and names the cut and the limit in a header of its own', async () => {
    const out = await run(message([`big:${'x'.repeat(500)}`, 'keep:me'], '{}'), SMALL, 13);
    expect(out).not.toContain('xxxx');
    expect(out).toContain('keep:me\n');
    expect(out).toContain('message-id:ID-1\n');
    expect(out).toContain(
      `${CUT_HEADER}:header big of 504 bytes over the 64-byte line limit dropped\n\n{}\0`,
    );
  });

  it('shortens a protocol header instead of dropping it, without leaving half an escape', async () => {
    const text = `${'y'.repeat(56)}\\\\`; // the 64-byte cut falls between the two backslashes
    const out = await run(`ERROR\nmessage:${text}${'z'.repeat(100)}\n\nbody\0`, SMALL);
    expect(out).toContain(`message:${'y'.repeat(56)}\n`);
    expect(out).toContain('shortened');
  });

  it('keeps only protocol headers past the header count and total size limits', async () => {
    const many = Array.from({ length: 9 }, (_, i) => `h${i}:v`);
    const out = await run(message(many, '{}', true), SMALL, 5);
    expect(out).toContain('content-length:2\n');
    expect(out).toContain('h1:v\n');
    expect(out).not.toContain('h8:v');
    expect(out).toMatch(new RegExp(`${CUT_HEADER}:\\d+ headers past the 5-header limit dropped`));
    const wide = Array.from({ length: 4 }, (_, i) => `w${i}:${'v'.repeat(60)}`);
    const sized = await run(message(wide, '{}'), { ...SMALL, maxHeaders: 50 });
    expect(sized).toMatch(/headers past the 200-byte header size limit dropped/);
  });

  it('removes a producer-made cut header: only the filter says a frame was cut', async () => {
    const out = await run(message([`${CUT_HEADER}:fake`], '{}'), SMALL);
    expect(out).not.toContain(CUT_HEADER);
  });

  it('finds the next frame after a cut one whose body holds NULs (content-length)', async () => {
    const first = message([`big:${'x'.repeat(300)}`], 'a\0b', true);
    const second = message(['ok:1'], '{"n":2}');
    const out = await run(first + second, SMALL, 4);
    expect(out.endsWith(second)).toBe(true);
  });
});
