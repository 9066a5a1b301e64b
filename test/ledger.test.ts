import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import { Ledger, type LedgerRecord } from '../src/inputs/ledger.js';
import { Store } from '../src/store/store.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPILED_LEDGER = path.join(ROOT, 'dist/src/inputs/ledger.js');
const COMPILED_STORE = path.join(ROOT, 'dist/src/store/store.js');
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempStore(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-ledger-'));
  dirs.push(dir);
  return path.join(dir, 'fastmon.sqlite');
}

function sampled(size: number, mtimeMs = 1_712_345_678_901.1235): LedgerRecord {
  return { size, mtimeMs, outcome: 'sampled' };
}

async function openLedger(file: string): Promise<Ledger> {
  return new Ledger(await Store.acquire({ file }), true);
}

/** Opens, runs, closes: the ledger a test leaves behind is on disk only. */
async function withLedger<T>(file: string, run: (ledger: Ledger) => Promise<T>): Promise<T> {
  const ledger = await openLedger(file);
  try {
    return await run(ledger);
  } finally {
    await ledger.close();
  }
}

describe('ledger durability', () => {
  it('records survive a reopen, with the exact size and mtime', async () => {
    const file = tempStore();
    await withLedger(file, async (ledger) => {
      await ledger.record('swf.101993.000001.stf', sampled(1_048_576));
      await ledger.record('swf.101993.000002.stf', {
        size: 0,
        mtimeMs: 1_712_345_678_901,
        outcome: 'skipped',
      });
      await ledger.record('swf.101993.000003.stf', { size: 2 ** 53 - 1, mtimeMs: -0.5, outcome: 'failed' });
    });
    await withLedger(file, async (ledger) => {
      expect(ledger.size).toBe(3);
      expect(ledger.get('swf.101993.000001.stf')).toEqual(sampled(1_048_576));
      expect(ledger.get('swf.101993.000002.stf')).toEqual({
        size: 0,
        mtimeMs: 1_712_345_678_901,
        outcome: 'skipped',
      });
      expect(ledger.get('swf.101993.000003.stf')).toEqual({
        size: 2 ** 53 - 1,
        mtimeMs: -0.5,
        outcome: 'failed',
      });
      expect(ledger.has('swf.101993.000004.stf')).toBe(false);
      expect(ledger.get('swf.101993.000004.stf')).toBeUndefined();
    });
  });

  it('recording a key again replaces its record, within one commit and across commits', async () => {
    const file = tempStore();
    await withLedger(file, async (ledger) => {
      await Promise.all([ledger.record('a', sampled(1)), ledger.record('a', sampled(2))]);
      expect(ledger.get('a')).toEqual(sampled(2));
      await ledger.record('a', { size: 3, mtimeMs: 7, outcome: 'failed' });
      expect(ledger.size).toBe(1);
    });
    await withLedger(file, async (ledger) => {
      expect(ledger.get('a')).toEqual({ size: 3, mtimeMs: 7, outcome: 'failed' });
    });
  });

  it('a forgotten key stays forgotten after a reopen, and can be recorded again', async () => {
    const file = tempStore();
    await withLedger(file, async (ledger) => {
      await Promise.all([ledger.record('gone', sampled(1)), ledger.record('retry', sampled(2))]);
      await Promise.all([ledger.forget('gone'), ledger.forget('retry'), ledger.forget('never-there')]);
      expect(ledger.size).toBe(0);
      await ledger.record('retry', sampled(3));
    });
    await withLedger(file, async (ledger) => {
      expect(ledger.has('gone')).toBe(false);
      expect(ledger.get('retry')).toEqual(sampled(3));
      expect(ledger.size).toBe(1);
    });
  });

  it('close writes what is still queued, and later records are refused with SHUTDOWN', async () => {
    const file = tempStore();
    const ledger = await openLedger(file);
    const pending = [ledger.record('queued-1', sampled(1)), ledger.record('queued-2', sampled(2))];
    await ledger.close();
    await Promise.all(pending);
    const late = await ledger.record('late', sampled(3)).catch((err: unknown) => err);
    expect(isFastmonError(late, 'SHUTDOWN')).toBe(true);
    await withLedger(file, async (reopened) => {
      expect(reopened.has('queued-1') && reopened.has('queued-2')).toBe(true);
      expect(reopened.size).toBe(2);
    });
  });

  it('10,000 concurrent records resolve in far fewer commits, and all are there after a reopen', async () => {
    const file = tempStore();
    const store = await Store.acquire({ file });
    const ledger = new Ledger(store, true);
    const before = store.commits;
    await Promise.all(Array.from({ length: 10_000 }, (_, n) => ledger.record(`k${n}`, sampled(n))));
    expect(store.commits - before).toBeLessThan(200);
    await ledger.close();
    await withLedger(file, async (reopened) => {
      expect(reopened.size).toBe(10_000);
      expect(reopened.get('k9999')).toEqual(sampled(9999));
    });
  });
});

describe('ledger keys', () => {
  it('keys with newlines, tabs, backslashes, quotes and non-ASCII round-trip', async () => {
    const keys = ['a\nb', 'tab\there', 'back\\slash', 'it\'s "quoted"', 'é ✓ 数据', 'x\r\n', '%_*'];
    const file = tempStore();
    await withLedger(file, async (ledger) => {
      await Promise.all(keys.map((key, n) => ledger.record(key, sampled(n))));
    });
    await withLedger(file, async (ledger) => {
      for (const [n, key] of keys.entries()) expect(ledger.get(key)).toEqual(sampled(n));
      expect(ledger.has('%')).toBe(false);
    });
  });

  it('a lookup of many keys at once gives the records of those present, as get does one by one', async () => {
    const keys = ['a\nb', 'é ✓ 数据', '[1,"x"]', 'plain', 'x\u0000y'];
    const file = tempStore();
    await withLedger(file, async (ledger) => {
      await Promise.all(keys.map((key, n) => ledger.record(key, { ...sampled(n), outcome: 'failed' })));
      const asked = [...keys, 'absent', 'é ✓', 'plain '];
      const found = ledger.getMany(asked);
      expect([...found.keys()].sort()).toEqual([...keys].sort());
      for (const key of asked) expect(found.get(key)).toEqual(ledger.get(key));
      expect(ledger.getMany([]).size).toBe(0);
    });
  });

  it('any set of well-formed keys survives a reopen', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1 }), { maxLength: 30 }),
        async (keys) => {
          const file = tempStore();
          await withLedger(file, (ledger) =>
            Promise.all(keys.map((key, n) => ledger.record(key, sampled(n)))),
          );
          await withLedger(file, async (ledger) => {
            expect(ledger.size).toBe(keys.length);
            for (const [n, key] of keys.entries()) expect(ledger.get(key)).toEqual(sampled(n));
          });
        },
      ),
      { numRuns: 15 },
    );
  });
});

describe('ledger under kill -9', () => {
  // A writer in its own process, with eight concurrent lanes so that commits hold several records.
  const WRITER = `
    const [storeUrl, ledgerUrl, file, round] = process.argv.slice(1);
    const { Store } = await import(storeUrl);
    const { Ledger } = await import(ledgerUrl);
    const ledger = new Ledger(await Store.acquire({ file }));
    let next = 0;
    const lane = async () => {
      for (;;) {
        const n = next++;
        const key = round + '/swf.101993.' + String(n).padStart(6, '0') + (n % 7 === 0 ? '\\n\\u00e9.stf' : '.stf');
        await ledger.record(key, { size: n, mtimeMs: 1712345678901.1235 + n, outcome: 'sampled' });
        process.stdout.write(JSON.stringify(key) + '\\n');
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
  `;

  async function writeUntilKilled(file: string, round: number, acknowledged: number): Promise<string[]> {
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        WRITER,
        pathToFileURL(COMPILED_STORE).href,
        pathToFileURL(COMPILED_LEDGER).href,
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
        if (out.split('\n').length > acknowledged) resolve();
      });
      child.on('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await closed;
    // Every complete line was printed after its record() resolved.
    return out
      .split('\n')
      .slice(0, -1)
      .map((line) => JSON.parse(line) as string);
  }

  it('every key acknowledged before SIGKILL is in the ledger after a restart', async () => {
    expect(existsSync(COMPILED_LEDGER), `${COMPILED_LEDGER} is missing: run npm run build`).toBe(true);
    const file = tempStore();
    const acknowledged: string[] = [];
    for (let round = 0; round < 3; round++) {
      acknowledged.push(...(await writeUntilKilled(file, round, 1500 + round * 700)));
      await withLedger(file, async (ledger) => {
        const missing = acknowledged.filter((key) => !ledger.has(key));
        expect(missing).toEqual([]);
      });
    }
    expect(acknowledged.length).toBeGreaterThan(3000);
  });
});
