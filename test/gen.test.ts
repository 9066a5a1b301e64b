import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { genCommand } from '../src/cli/gen-command.js';
import { FastmonError } from '../src/errors.js';
import {
  PLAN_DEFAULTS,
  type PlanOptions,
  payloadFill,
  planRun,
  planStf,
  stfFilename,
} from '../src/gen/plan.js';
import { adler32 } from '../workers/stf-format.js';
import { readStf } from '../workers/stf-reader.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-gen-'));
  made.push(d);
  return d;
}

function options(extra: Partial<PlanOptions> = {}): PlanOptions {
  return { ...PLAN_DEFAULTS, run: 100100, count: 3, tfsPerStf: 200, tfSizeMean: 4000, ...extra };
}

/** Runs the command in-process with stdout and stderr captured. */
async function gen(args: string[], tty = false): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await genCommand([...args, '--log-level', 'warn'], {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: {
      write: (t: string) => {
        stderr += t;
        return true;
      },
      isTTY: tty,
      columns: 100,
    },
  });
  return { code, stdout, stderr };
}

function sha(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe('the run plan', () => {
  it('gives the same TF lengths and payload bytes for the same seed, others for another seed', () => {
    const a = planRun(options());
    expect(planRun(options())).toEqual(a);
    const b = planRun(options({ seed: 'other' }));
    expect(b.map((s) => s.tfLengths)).not.toEqual(a.map((s) => s.tfLengths));

    const bytes = (seed: string) => {
      const into = Buffer.alloc(10_000);
      payloadFill(seed, 100100, 1)(3, 0, into);
      return into;
    };
    expect(bytes('s1').equals(bytes('s1'))).toBe(true);
    expect(bytes('s1').equals(bytes('s2'))).toBe(false);
  });

  it('names STFs swf.<run>.<seq:06d>.stf from the start sequence, independently of the count', () => {
    const plan = planRun(options({ startSequence: 7 }));
    expect(plan.map((s) => s.filename)).toEqual([
      'swf.100100.000007.stf',
      'swf.100100.000008.stf',
      'swf.100100.000009.stf',
    ]);
    expect(stfFilename(5, 1234567)).toBe('swf.5.1234567.stf');
    // A longer run starts with the same files.
    expect(planStf(options({ count: 50 }), 1)).toEqual(planStf(options(), 1));
    expect(planRun(options({ count: 5 })).slice(0, 3)).toEqual(planRun(options()));
  });

  it('draws log-normal TF lengths around the mean, at least one byte, and exactly the mean with sigma 0', () => {
    const [stf] = planRun(options({ count: 1, tfsPerStf: 5000, tfSizeMean: 16384 }));
    const lengths = stf?.tfLengths ?? [];
    expect(lengths).toHaveLength(5000);
    expect(lengths.every((l) => Number.isInteger(l) && l >= 1)).toBe(true);
    const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length;
    expect(Math.abs(mean / 16384 - 1)).toBeLessThan(0.03);
    expect(new Set(lengths).size).toBeGreaterThan(1000);
    expect(stf?.payloadBytes).toBe(lengths.reduce((a, b) => a + b, 0));

    expect(planStf(options({ tfSizeSigma: 0 }), 0).tfLengths.every((l) => l === 4000)).toBe(true);
    expect(planStf(options({ tfSizeMean: 1, tfSizeSigma: 3 }), 0).tfLengths.every((l) => l >= 1)).toBe(true);
  });

  it('covers back-to-back time spans of stfIntervalMs from the start time', () => {
    const [first, second] = planRun(options({ startTimeMs: 1_000, stfIntervalMs: 600 }));
    expect(first?.startNs).toBe(1_000_000_000n);
    expect(first?.endNs).toBe(1_600_000_000n);
    expect(second?.startNs).toBe(1_600_000_000n);
  });

  it('fills the same bytes whatever the offsets and chunk sizes', () => {
    const length = 5 * 4096 + 123;
    const whole = Buffer.alloc(length);
    payloadFill('seed', 1, 2)(4, 0, whole);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        const fill = payloadFill('seed', 1, 2);
        const pieces: Buffer[] = [];
        let offset = 0;
        for (let i = 0; offset < length; i++) {
          const n = Math.min(sizes[i % sizes.length] as number, length - offset);
          const piece = Buffer.alloc(n);
          // Interleave another TF, so the generator cannot rely on the calls being in order.
          fill(9, offset, Buffer.alloc(17));
          fill(4, offset, piece);
          pieces.push(piece);
          offset += n;
        }
        expect(Buffer.concat(pieces).equals(whole)).toBe(true);
      }),
      { numRuns: 50 },
    );
    // A slice in the middle, on its own.
    const middle = Buffer.alloc(5000);
    payloadFill('seed', 1, 2)(4, 4000, middle);
    expect(middle.equals(whole.subarray(4000, 9000))).toBe(true);
    // Different TFs get different bytes.
    const other = Buffer.alloc(length);
    payloadFill('seed', 1, 2)(5, 0, other);
    expect(other.equals(whole)).toBe(false);
  });
});

describe('swf-fastmon gen', () => {
  it('writes binary STFs whose headers, TF lengths and TF checksums match the plan, and nothing else', async () => {
    const out = dir();
    const { code, stdout } = await gen([
      '--out',
      out,
      '--run',
      '100123',
      '--count',
      '3',
      '--tfs-per-stf',
      '64',
      '--tf-size',
      '3000',
      '--seed',
      'abc',
      '--state',
      'run',
      '--substate',
      'standby',
    ]);
    expect(code).toBe(0);
    const plan = planRun({
      ...PLAN_DEFAULTS,
      run: 100123,
      count: 3,
      tfsPerStf: 64,
      tfSizeMean: 3000,
      seed: 'abc',
      substate: 'standby',
    });
    // No temporary files are left behind.
    expect(readdirSync(out).sort()).toEqual(plan.map((s) => s.filename));
    let total = 0;
    for (const stf of plan) {
      const file = path.join(out, stf.filename);
      const { header, binary, tfIndex } = await readStf(file);
      expect(header).toMatchObject({
        format: 'epicstf',
        tfCount: 64,
        runId: '100123',
        sequence: stf.sequence,
        state: 'run',
        substate: 'standby',
        start: new Date(Date.UTC(2026, 0, 1) + 600 * stf.index).toISOString(),
        end: new Date(Date.UTC(2026, 0, 1) + 600 * (stf.index + 1)).toISOString(),
      });
      expect(binary?.startNs).toBe(stf.startNs);
      expect(binary?.endNs).toBe(stf.endNs);
      expect(tfIndex?.map((e) => e.length)).toEqual(stf.tfLengths);
      const bytes = readFileSync(file);
      for (const entry of tfIndex ?? []) {
        expect(entry.checksum).toBe(adler32(bytes.subarray(entry.offset, entry.offset + entry.length)));
      }
      total += bytes.length;
    }
    expect(stdout).toMatch(
      new RegExp(`^swf-fastmon gen: run 100123, 3 STFs, ${(total / 1e6).toFixed(1)} MB in `),
    );
    expect(stdout).toMatch(/MB\/s\) to /);
  });

  it('writes byte-identical files for the same seed, and different ones for another seed', async () => {
    const args = (out: string, seed: string) => [
      '--out',
      out,
      '--run',
      '100124',
      '--count',
      '2',
      '--tfs-per-stf',
      '50',
      '--seed',
      seed,
    ];
    const [a, b, c] = [dir(), dir(), dir()];
    await gen(args(a, 'one'));
    await gen(args(b, 'one'));
    await gen(args(c, 'two'));
    for (const name of readdirSync(a)) {
      expect(sha(path.join(b, name))).toBe(sha(path.join(a, name)));
      expect(sha(path.join(c, name))).not.toBe(sha(path.join(a, name)));
    }
  });

  it('never shows a watcher an .stf file smaller than its final size', async () => {
    const out = dir();
    const seen = new Map<string, number[]>();
    let sawTemporary = false;
    let done = false;
    const watch = (async () => {
      while (!done) {
        for (const name of await readdir(out)) {
          const size = await stat(path.join(out, name)).then(
            (s) => s.size,
            () => null, // a temporary file renamed between readdir and stat
          );
          if (size === null) continue;
          if (!name.endsWith('.stf')) sawTemporary = true;
          else seen.set(name, [...(seen.get(name) ?? []), size]);
        }
      }
    })();
    const { code } = await gen(['--out', out, '--run', '100125', '--count', '4', '--tf-size', '8000']);
    done = true;
    await watch;
    expect(code).toBe(0);
    expect(sawTemporary).toBe(true); // the watcher did look while files were being written
    for (const [name, sizes] of seen) {
      const final = (await stat(path.join(out, name))).size;
      expect(sizes.every((s) => s === final)).toBe(true);
    }
    expect(readdirSync(out).every((n) => n.endsWith('.stf'))).toBe(true);
  });

  it('draws a progress bar on a TTY only', async () => {
    const tty = await gen(['--out', dir(), '--run', '100126', '--count', '2', '--tfs-per-stf', '10'], true);
    expect(tty.stderr).toContain('\r\x1b[K[');
    expect(tty.stderr).toMatch(/2\/2 STFs {2}[\d.]+ MB {2}[\d.]+ MB\/s {2}[\d.]+ s\n$/);
    const piped = await gen(['--out', dir(), '--run', '100126', '--count', '2', '--tfs-per-stf', '10']);
    expect(piped.stderr).toBe('');
  });

  it('refuses bad options with CONFIG_INVALID naming the flag and the value', async () => {
    const out = dir();
    const refused = async (args: string[]) => {
      const err = await gen(args).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FastmonError);
      expect((err as FastmonError).code).toBe('CONFIG_INVALID');
      return (err as FastmonError).message;
    };
    expect(await refused(['--out', out, '--run', 'abc'])).toContain(
      '--run: expected an integer >= 1, got "abc"',
    );
    expect(await refused(['--out', out, '--run', '1', '--count', '0'])).toContain('--count');
    expect(await refused(['--out', out, '--run', '1', '--tf-size-sigma', 'x'])).toContain(
      '--tf-size-sigma: expected a number from 0 to 3, got "x"',
    );
    expect(await refused(['--out', out, '--run', '1', '--state', 'a-state-name-longer-than-16'])).toContain(
      '--state',
    );
    expect(await refused(['--out', out, '--run', '1', '--start-time', 'yesterday'])).toContain('"yesterday"');
    expect(await refused(['--out', out, '--run', '1', '--destination', 'epictopic'])).toContain(
      '--destination: expected /topic/NAME or /queue/NAME, got "epictopic"',
    );
    expect(await refused(['--run', '1'])).toContain('--out DIR is required');
    expect(await refused(['--out', out])).toContain('--run N is required');
    expect(await refused(['--out', out, '--run', '1', '--publish', '--broker-host='])).toContain(
      '--publish needs a broker',
    );
    expect(readdirSync(out)).toEqual([]);
  });
});
