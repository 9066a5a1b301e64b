import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import { Outbox, type OutboxEntry } from '../src/sinks/outbox.js';
import { OutboxDrainer } from '../src/sinks/outbox-drainer.js';
import { captureLogs } from './support/logs.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPILED = path.join(ROOT, 'dist/src/sinks/outbox.js');
const LIMIT = 64 << 20;
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempOutbox(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-outbox-'));
  dirs.push(dir);
  return path.join(dir, 'outbox.jsonl');
}

function sample(n: number): { tf_filename: string; tf_first: number; tf_last: number; note: string } {
  return {
    tf_filename: `swf.101993.${String(n).padStart(6, '0')}.tf`,
    tf_first: n,
    tf_last: n + 9,
    note: 'é ✓',
  };
}

/** Opens, runs, closes: the outbox a test leaves behind is on disk only. */
async function withOutbox<T>(
  file: string,
  run: (outbox: Outbox) => Promise<T>,
  options: Partial<Parameters<typeof Outbox.open>[1]> = {},
): Promise<T> {
  const outbox = await Outbox.open(file, { maxBytes: LIMIT, ...options });
  try {
    return await run(outbox);
  } finally {
    await outbox.close();
  }
}

const pendingOf = (outbox: Outbox): OutboxEntry[] => [...outbox.pending()];

describe('outbox durability', () => {
  it('entries survive a reopen, in append order, and later entries get higher seqs', async () => {
    const file = tempOutbox();
    const payloads = [sample(1), sample(2), { nested: [1, null, 'x\ny\u2028'] }, 'plain', 42];
    const seqs = await withOutbox(file, async (outbox) => {
      const out: number[] = [];
      for (const payload of payloads) out.push(await outbox.append(payload));
      return out;
    });
    await withOutbox(file, async (outbox) => {
      expect(outbox.loaded).toMatchObject({ pending: 5, corrupt: 0, tornBytes: 0 });
      expect(pendingOf(outbox)).toEqual(payloads.map((payload, i) => ({ seq: seqs[i], payload })));
      expect(await outbox.append('later')).toBeGreaterThan(Math.max(...seqs));
    });
  });

  it('complete() survives a reopen and completing an unknown seq does nothing', async () => {
    const file = tempOutbox();
    const seqs = await withOutbox(file, async (outbox) => {
      const out = await Promise.all([1, 2, 3, 4, 5].map((n) => outbox.append(sample(n))));
      await outbox.complete(out[1]!);
      await outbox.complete(out[3]!);
      await outbox.complete(out[3]!);
      await outbox.complete(9999);
      expect(outbox.depth).toBe(3);
      return out;
    });
    await withOutbox(file, async (outbox) => {
      expect(outbox.depth).toBe(3);
      expect(pendingOf(outbox).map((e) => e.seq)).toEqual([seqs[0], seqs[2], seqs[4]]);
    });
  });

  it('concurrent appends share a few fdatasyncs (group commit)', async () => {
    const file = tempOutbox();
    await withOutbox(file, async (outbox) => {
      const seqs = await Promise.all(Array.from({ length: 1000 }, (_, n) => outbox.append(sample(n))));
      expect(new Set(seqs).size).toBe(1000);
      expect(outbox.syncs).toBeLessThan(10);
      expect(outbox.depth).toBe(1000);
    });
    await withOutbox(file, async (outbox) => expect(outbox.depth).toBe(1000));
  });

  it('a torn last line is cut off with a warning and the outbox stays usable', async () => {
    const file = tempOutbox();
    await withOutbox(file, async (outbox) => {
      await outbox.append(sample(1));
      await outbox.append(sample(2));
    });
    appendFileSync(file, 'put\t3\t{"tf_filename":"swf.10');
    const logs = captureLogs();
    await withOutbox(
      file,
      async (outbox) => {
        expect(outbox.loaded.tornBytes).toBeGreaterThan(0);
        expect(pendingOf(outbox).map((e) => e.payload)).toEqual([sample(1), sample(2)]);
        await outbox.append(sample(3));
      },
      { logger: logs.logger },
    );
    expect(logs.find((r) => r.level === 'warn' && String(r.msg).includes('unfinished line'))).toBeDefined();
    await withOutbox(file, async (outbox) => {
      expect(outbox.loaded).toMatchObject({ corrupt: 0, tornBytes: 0 });
      expect(pendingOf(outbox).map((e) => e.payload)).toEqual([sample(1), sample(2), sample(3)]);
    });
  });

  it('a corrupt line is skipped with a warning, the entries around it kept', async () => {
    const file = tempOutbox();
    await withOutbox(file, async (outbox) => {
      await outbox.append(sample(1));
    });
    appendFileSync(file, 'put\t2\t{not json}\nput\tx\t{}\n\u0000\u0000\n');
    await withOutbox(file, async (outbox) => {
      await outbox.append(sample(4));
    });
    const logs = captureLogs();
    await withOutbox(
      file,
      async (outbox) => {
        expect(outbox.loaded.corrupt).toBe(3);
        expect(pendingOf(outbox).map((e) => e.payload)).toEqual([sample(1), sample(4)]);
      },
      { logger: logs.logger },
    );
    expect(logs.find((r) => r.level === 'warn' && r.count === 3)).toBeDefined();
  });

  it('refuses a file that is not an outbox', async () => {
    const file = tempOutbox();
    writeFileSync(file, 'tf_filename,tf_first\n');
    await expect(Outbox.open(file, { maxBytes: LIMIT })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(readFileSync(file, 'utf8')).toBe('tf_filename,tf_first\n');
  });
});

describe('outbox size limit', () => {
  it('past maxBytes appends fail with OUTBOX_FULL and one alarm, and work again once drained', async () => {
    const file = tempOutbox();
    const logs = captureLogs();
    await withOutbox(
      file,
      async (outbox) => {
        const accepted: number[] = [];
        let refused: unknown;
        while (refused === undefined) {
          await outbox.append(sample(accepted.length)).then(
            (seq) => accepted.push(seq),
            (err) => (refused = err),
          );
        }
        expect(isFastmonError(refused, 'OUTBOX_FULL')).toBe(true);
        expect((refused as Error).message).toContain(file);
        expect((refused as Error).message).toContain('4000');
        expect(outbox.full).toBe(true);
        for (let i = 0; i < 5; i++) {
          await expect(outbox.append(sample(i))).rejects.toMatchObject({ code: 'OUTBOX_FULL' });
        }
        const alarms = logs.records().filter((r) => r.level === 'error' && r.code === 'OUTBOX_FULL');
        expect(alarms).toHaveLength(1);
        // Nothing accepted was dropped to make room.
        expect(pendingOf(outbox).map((e) => e.seq)).toEqual(accepted);

        for (const seq of accepted.slice(0, -2)) await outbox.complete(seq);
        await outbox.compact();
        expect(outbox.full).toBe(false);
        const seq = await outbox.append(sample(1000));
        expect(pendingOf(outbox).map((e) => e.seq)).toEqual([...accepted.slice(-2), seq]);
      },
      { maxBytes: 4000, logger: logs.logger },
    );
    expect(logs.find((r) => r.level === 'warn' && String(r.msg).includes('back under'))).toBeDefined();
  });

  it('an outbox replayed to empty ends up as a tiny file', async () => {
    const file = tempOutbox();
    await withOutbox(file, async (outbox) => {
      const seqs = await Promise.all(Array.from({ length: 300 }, (_, n) => outbox.append(sample(n))));
      for (const seq of seqs) await outbox.complete(seq);
    });
    expect(statSync(file).size).toBeLessThan(64);
    // A file left with only replayed entries (say by kill -9) shrinks on open.
    appendFileSync(file, `put\t900\t${JSON.stringify(sample(9))}\ndone\t900\n`);
    await withOutbox(file, async (outbox) => {
      expect(outbox.depth).toBe(0);
      expect(outbox.bytes).toBeLessThan(64);
      expect(await outbox.append('next')).toBeGreaterThan(900);
    });
  });
});

describe('outbox compaction', () => {
  it('keeps every pending entry, in order, with appends and completes racing it', async () => {
    const file = tempOutbox();
    const expected = new Map<number, unknown>();
    let n = 0;
    const add = async (outbox: Outbox) => {
      const payload = sample(n++);
      expected.set(await outbox.append(payload), payload);
    };
    const done = async (outbox: Outbox, seq: number) => {
      await outbox.complete(seq);
      expected.delete(seq);
    };
    await withOutbox(file, async (outbox) => {
      for (let round = 0; round < 6; round++) {
        await Promise.all(Array.from({ length: 800 }, () => add(outbox)));
        const seqs = [...expected.keys()];
        const victims = seqs.filter((_, i) => i % 5 !== 0);
        const racing = [
          outbox.compact(),
          ...victims.map((seq) => done(outbox, seq)),
          ...Array.from({ length: 200 }, () => add(outbox)),
          outbox.compact(),
        ];
        await Promise.all(racing);
        expect(pendingOf(outbox).map((e) => e.seq)).toEqual([...expected.keys()]);
      }
      expect(outbox.compactions).toBeGreaterThan(0);
    });
    await withOutbox(file, async (outbox) => {
      expect(outbox.loaded.corrupt).toBe(0);
      expect(pendingOf(outbox)).toEqual([...expected].map(([seq, payload]) => ({ seq, payload })));
    });
  });
});

describe('outbox under kill -9', () => {
  // A writer in its own process, eight concurrent lanes; most entries are completed again, so the file
  // is compacted now and then and the kill may land in the middle of a rewrite.
  const WRITER = `
    const [moduleUrl, file, round] = process.argv.slice(1);
    const { Outbox } = await import(moduleUrl);
    const outbox = await Outbox.open(file, { maxBytes: 1 << 30 });
    let next = 0;
    const lane = async () => {
      for (;;) {
        const n = next++;
        const seq = await outbox.append({ round: Number(round), n, tf_filename: 'swf.' + n + '.tf' });
        process.stdout.write('put ' + seq + ' ' + n + '\\n');
        if (n % 10 !== 0) {
          await outbox.complete(seq);
          process.stdout.write('done ' + seq + '\\n');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
  `;

  interface Acknowledged {
    put: Map<number, number>;
    done: Set<number>;
  }

  async function writeUntilKilled(file: string, round: number, lines: number, acked: Acknowledged) {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', WRITER, pathToFileURL(COMPILED).href, file, String(round)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    const closed = new Promise((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (out.split('\n').length > lines) resolve();
      });
      child.on('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await closed;
    // Every complete line was printed after its append() or complete() resolved.
    for (const line of out.split('\n').slice(0, -1)) {
      const [kind, seq, n] = line.split(' ');
      if (kind === 'put') acked.put.set(Number(seq), Number(n));
      else acked.done.add(Number(seq));
    }
  }

  it('every append acknowledged before SIGKILL is pending after a restart, in order', async () => {
    expect(existsSync(COMPILED), `${COMPILED} is missing: run npx tsc -p tsconfig.json`).toBe(true);
    const file = tempOutbox();
    let total = 0;
    for (let round = 0; round < 3; round++) {
      const acked: Acknowledged = { put: new Map(), done: new Set() };
      await writeUntilKilled(file, round, 4000 + round * 1000, acked);
      total += acked.put.size;
      await withOutbox(file, async (outbox) => {
        expect(outbox.loaded.corrupt).toBe(0);
        const pending = pendingOf(outbox);
        const seqs = pending.map((e) => e.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        const bySeq = new Map(pending.map((e) => [e.seq, e.payload as { round: number; n: number }]));
        // Entries whose complete() was called may be gone even when the child died before saying so.
        const missing = [...acked.put].filter(([seq, n]) => n % 10 === 0 && bySeq.get(seq)?.n !== n);
        expect(missing).toEqual([]);
        expect([...acked.done].filter((seq) => bySeq.has(seq))).toEqual([]);
        // Replay what is left, as the drainer would after the restart.
        for (const { seq } of pending) await outbox.complete(seq);
      });
    }
    expect(total).toBeGreaterThan(3000);
  });
});

describe('outbox drainer', () => {
  async function filled(count: number): Promise<Outbox> {
    const outbox = await Outbox.open(tempOutbox(), { maxBytes: LIMIT });
    for (let n = 0; n < count; n++) await outbox.append(sample(n));
    return outbox;
  }

  const nOf = (payload: unknown) => (payload as { tf_first: number }).tf_first;

  it('replays entries in append order and empties the outbox', async () => {
    const outbox = await filled(20);
    const seen: number[] = [];
    let changes = 0;
    const drainer = new OutboxDrainer(outbox, async (payload) => void seen.push(nOf(payload)), {
      onChange: () => changes++,
    });
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(0), { timeout: 10_000 });
    await vi.waitFor(() => expect(drainer.draining).toBe(false));
    await drainer.close();
    await outbox.close();
    expect(seen).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(drainer.replayed).toBe(20);
    expect(drainer.failures).toBe(0);
    expect(changes).toBeGreaterThanOrEqual(20);
  });

  it('retries a failing entry with growing backoff and never skips ahead of it', async () => {
    const outbox = await filled(6);
    const logs = captureLogs();
    const calls: number[] = [];
    let failuresLeft = 4;
    const drainer = new OutboxDrainer(
      outbox,
      async (payload) => {
        calls.push(nOf(payload));
        if (nOf(payload) === 2 && failuresLeft-- > 0) throw new Error('swf-monitor answered 503');
      },
      { initialDelayMs: 2, maxDelayMs: 1000, logger: logs.logger },
    );
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(0), { timeout: 10_000 });
    await drainer.close();
    await outbox.close();
    expect(calls).toEqual([0, 1, 2, 2, 2, 2, 2, 3, 4, 5]);
    expect(drainer.failures).toBe(4);
    expect(drainer.replayed).toBe(6);
    const warnings = logs
      .records()
      .filter((r) => r.level === 'warn' && r.reason === 'swf-monitor answered 503');
    expect(warnings.map((r) => r.attempt)).toEqual([1, 2, 3, 4]);
    const delays = warnings.map((r) => r.retryInMs as number);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]!);
    expect(delays.at(-1)).toBeGreaterThan(delays[0]!);
  });

  it('close() aborts the handler in progress and waits for it to settle', async () => {
    const outbox = await filled(3);
    let settled = false;
    let started = false;
    const drainer = new OutboxDrainer(outbox, (_payload, signal) => {
      started = true;
      return new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          setImmediate(() => {
            settled = true;
            reject(signal.reason);
          });
        });
      });
    });
    drainer.start();
    await vi.waitFor(() => expect(started).toBe(true));
    await drainer.close();
    expect(settled).toBe(true);
    expect(drainer.failures).toBe(0);
    expect(outbox.depth).toBe(3);
    await outbox.close();
  });

  it('close() ends a long backoff', async () => {
    const outbox = await filled(1);
    const drainer = new OutboxDrainer(
      outbox,
      async () => {
        throw new Error('swf-monitor unreachable');
      },
      { initialDelayMs: 3_600_000, maxDelayMs: 3_600_000 },
    );
    drainer.start();
    await vi.waitFor(() => expect(drainer.failures).toBe(1));
    await drainer.close();
    expect(drainer.draining).toBe(false);
    expect(outbox.depth).toBe(1);
    await outbox.close();
  });

  it('sleeps on an empty outbox and wakes on notify()', async () => {
    const outbox = await filled(0);
    const seen: number[] = [];
    const drainer = new OutboxDrainer(outbox, async (payload) => void seen.push(nOf(payload)));
    drainer.start();
    for (let n = 0; n < 3; n++) {
      await outbox.append(sample(n));
      drainer.notify();
      await vi.waitFor(() => expect(seen).toHaveLength(n + 1), { timeout: 10_000 });
    }
    await vi.waitFor(() => expect(outbox.depth).toBe(0));
    await drainer.close();
    await outbox.close();
    expect(seen).toEqual([0, 1, 2]);
  });
});

describe('outbox at scale', () => {
  it('opens 100k pending entries written directly to the file', async () => {
    const file = tempOutbox();
    const parts = ['#swf-fastmon-outbox v1 next=1\n'];
    for (let seq = 1; seq <= 100_000; seq++) parts.push(`put\t${seq}\t${JSON.stringify(sample(seq))}\n`);
    writeFileSync(file, parts.join(''));
    await withOutbox(file, async (outbox) => {
      console.log(`outbox: 100,000 pending entries (${outbox.bytes} bytes) loaded in ${outbox.loaded.ms} ms`);
      expect(outbox.depth).toBe(100_000);
      const first = outbox.pending().next().value;
      expect(first).toEqual({ seq: 1, payload: sample(1) });
      expect(await outbox.append('next')).toBe(100_001);
    });
  }, 60_000);
});
