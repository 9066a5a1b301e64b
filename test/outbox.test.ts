import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import { Outbox, type OutboxEntry, type OutboxOptions } from '../src/sinks/outbox.js';
import { OutboxDrainer } from '../src/sinks/outbox-drainer.js';
import { Store } from '../src/store/store.js';
import { captureLogs } from './support/logs.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPILED = path.join(ROOT, 'dist/src/sinks/outbox.js');
const COMPILED_STORE = path.join(ROOT, 'dist/src/store/store.js');
const LIMIT = 64 << 20;
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempStore(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-outbox-'));
  dirs.push(dir);
  return path.join(dir, 'fastmon.sqlite');
}

function sample(n: number): { tf_filename: string; tf_first: number; tf_last: number; note: string } {
  return {
    tf_filename: `swf.101993.${String(n).padStart(6, '0')}.tf`,
    tf_first: n,
    tf_last: n + 9,
    note: 'é ✓',
  };
}

async function openOutbox(file: string, options: Partial<OutboxOptions> = {}): Promise<Outbox> {
  const store = await Store.acquire({ file });
  return Outbox.open(store, { maxBytes: LIMIT, ...options, owned: true });
}

/** Opens, runs, closes: the outbox a test leaves behind is on disk only. */
async function withOutbox<T>(
  file: string,
  run: (outbox: Outbox) => Promise<T>,
  options: Partial<OutboxOptions> = {},
): Promise<T> {
  const outbox = await openOutbox(file, options);
  try {
    return await run(outbox);
  } finally {
    await outbox.close();
  }
}

const pendingOf = (outbox: Outbox): OutboxEntry[] => [...outbox.pending()];

describe('outbox durability', () => {
  it('entries survive a reopen, in append order, and later entries get higher seqs', async () => {
    const file = tempStore();
    const seqs = await withOutbox(file, (outbox) =>
      Promise.all([0, 1, 2].map((n) => outbox.append(sample(n)))),
    );
    await withOutbox(file, async (outbox) => {
      expect(outbox.depth).toBe(3);
      expect(pendingOf(outbox)).toEqual(seqs.map((seq, n) => ({ seq, payload: sample(n) })));
      const later = await outbox.append(sample(3));
      expect(later).toBeGreaterThan(Math.max(...seqs));
    });
  });

  it('complete() survives a reopen, a sequence number is never reused, and an unknown seq does nothing', async () => {
    const file = tempStore();
    const seqs = await withOutbox(file, async (outbox) => {
      const seqs = await Promise.all([0, 1, 2].map((n) => outbox.append(sample(n))));
      await outbox.complete(seqs[2]!);
      await outbox.complete(seqs[2]!);
      await outbox.complete(9999);
      expect(outbox.depth).toBe(2);
      return seqs;
    });
    await withOutbox(file, async (outbox) => {
      expect(pendingOf(outbox).map((e) => e.seq)).toEqual(seqs.slice(0, 2));
      expect(await outbox.append(sample(4))).toBeGreaterThan(seqs[2]!);
    });
  });

  it('concurrent appends share a few commits (group commit)', async () => {
    await withOutbox(tempStore(), async (outbox) => {
      const before = outbox.syncs;
      await Promise.all(Array.from({ length: 2000 }, (_, n) => outbox.append(sample(n))));
      expect(outbox.depth).toBe(2000);
      expect(outbox.syncs - before).toBeLessThan(50);
    });
  });

  it('sqlite3 sees the pending entries as JSON', async () => {
    const file = tempStore();
    await withOutbox(file, (outbox) => outbox.append(sample(7)));
    const db = new Database(file, { readonly: true });
    const rows = db.prepare("SELECT seq, json_extract(payload, '$.tf_filename') AS name FROM outbox").all();
    db.close();
    expect(rows).toEqual([{ seq: 1, name: 'swf.101993.000007.tf' }]);
  });
});

describe('outbox size limit', () => {
  it('past maxBytes appends fail with OUTBOX_FULL and one alarm, and work again once drained', async () => {
    const file = tempStore();
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
        expect(outbox.full).toBe(false);
        const seq = await outbox.append(sample(1000));
        expect(pendingOf(outbox).map((e) => e.seq)).toEqual([...accepted.slice(-2), seq]);
      },
      { maxBytes: 4000, logger: logs.logger },
    );
    expect(logs.find((r) => r.level === 'warn' && String(r.msg).includes('back under'))).toBeDefined();
  });

  it('the size counted at start-up is that of the entries left by the last run', async () => {
    const file = tempStore();
    await withOutbox(file, async (outbox) => {
      const seqs = await Promise.all(Array.from({ length: 30 }, (_, n) => outbox.append(sample(n))));
      for (const seq of seqs.slice(10)) await outbox.complete(seq);
    });
    await withOutbox(file, async (outbox) => {
      expect(outbox.depth).toBe(10);
      const expected = Array.from({ length: 10 }, (_, n) => Buffer.byteLength(JSON.stringify(sample(n))));
      expect(outbox.bytes).toBe(expected.reduce((a, b) => a + b, 0));
    });
  });
});

describe('outbox under kill -9', () => {
  // A writer in its own process, eight concurrent lanes; most entries are completed again.
  const WRITER = `
    const [storeUrl, outboxUrl, file, round] = process.argv.slice(1);
    const { Store } = await import(storeUrl);
    const { Outbox } = await import(outboxUrl);
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
      [
        '--input-type=module',
        '-e',
        WRITER,
        pathToFileURL(COMPILED_STORE).href,
        pathToFileURL(COMPILED).href,
        file,
        String(round),
      ],
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
    const file = tempStore();
    let total = 0;
    for (let round = 0; round < 3; round++) {
      const acked: Acknowledged = { put: new Map(), done: new Set() };
      await writeUntilKilled(file, round, 4000 + round * 1000, acked);
      total += acked.put.size;
      const db = new Database(file, { readonly: true });
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
      await withOutbox(file, async (outbox) => {
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
    const outbox = await openOutbox(tempStore());
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

describe('outbox drainer in batches', () => {
  async function filled(count: number): Promise<Outbox> {
    const outbox = await openOutbox(tempStore());
    for (let n = 0; n < count; n++) await outbox.append(sample(n));
    return outbox;
  }

  const nOf = (payload: unknown) => (payload as { tf_first: number }).tf_first;
  const later = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("prepares a batch's entries at once and finishes them in append order", async () => {
    const outbox = await filled(10);
    const prepared: number[] = [];
    const finished: number[] = [];
    let preparing = 0;
    let mostAtOnce = 0;
    const drainer = new OutboxDrainer(
      outbox,
      {
        prepare: async (payload) => {
          const n = nOf(payload);
          prepared.push(n);
          mostAtOnce = Math.max(mostAtOnce, ++preparing);
          await later(20 - 2 * (n % 4)); // the later entries of a batch are ready first
          preparing--;
          return n;
        },
        finish: async (n) => void finished.push(n),
      },
      { batchSize: 4 },
    );
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(0), { timeout: 10_000 });
    await drainer.close();
    await outbox.close();
    expect(finished).toEqual(Array.from({ length: 10 }, (_, n) => n));
    expect(prepared).toEqual(finished);
    expect(mostAtOnce).toBe(4);
    expect(drainer.replayed).toBe(10);
  });

  it('completes the entries before a failing one, and replays from the failing one on, never finishing one ahead of it', async () => {
    const outbox = await filled(6);
    const prepared: number[] = [];
    const finished: number[] = [];
    let failuresLeft = 2;
    const drainer = new OutboxDrainer(
      outbox,
      {
        prepare: async (payload) => {
          const n = nOf(payload);
          prepared.push(n);
          if (n === 2 && failuresLeft-- > 0) throw new Error('database unavailable');
          return n;
        },
        finish: async (n) => void finished.push(n),
      },
      { batchSize: 6, initialDelayMs: 2 },
    );
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(0), { timeout: 10_000 });
    await drainer.close();
    await outbox.close();
    expect(finished).toEqual([0, 1, 2, 3, 4, 5]);
    expect(prepared).toEqual([0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3, 4, 5]);
    expect(drainer.failures).toBe(2);
    expect(drainer.replayed).toBe(6);
  });

  it('leaves every entry not yet finished in the outbox when closed mid-batch (at least once)', async () => {
    const file = tempStore();
    await withOutbox(file, async (outbox) => {
      for (let n = 0; n < 3; n++) await outbox.append(sample(n));
    });
    const outbox = await openOutbox(file);
    const finished: number[] = [];
    const drainer = new OutboxDrainer(
      outbox,
      {
        prepare: async (payload) => nOf(payload),
        finish: (n, signal) =>
          n === 1
            ? new Promise<void>((_resolve, reject) =>
                signal.addEventListener('abort', () => reject(signal.reason)),
              )
            : Promise.resolve(void finished.push(n)),
      },
      { batchSize: 3 },
    );
    drainer.start();
    await vi.waitFor(() => expect(outbox.depth).toBe(2));
    await drainer.close();
    await outbox.close();
    expect(finished).toEqual([0]);
    await withOutbox(file, async (reopened) => {
      expect(pendingOf(reopened).map((e) => nOf(e.payload))).toEqual([1, 2]);
    });
  });
});

describe('outbox at scale', () => {
  it('iterates 100k pending entries in order without loading them at once', async () => {
    const file = tempStore();
    await withOutbox(file, async (outbox) => {
      await Promise.all(Array.from({ length: 100_000 }, (_, n) => outbox.append(sample(n))));
    });
    await withOutbox(file, async (outbox) => {
      expect(outbox.depth).toBe(100_000);
      let expected = 0;
      for (const entry of outbox.pending()) {
        expect((entry.payload as { tf_first: number }).tf_first).toBe(expected++);
      }
      expect(expected).toBe(100_000);
    });
  }, 60_000);
});
