import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import { escapeKey, Ledger, type LedgerRecord, unescapeKey } from '../src/scan/ledger.js';
import { captureLogs } from './support/logs.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPILED = path.join(ROOT, 'dist/src/scan/ledger.js');
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempLedger(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-ledger-'));
  dirs.push(dir);
  return path.join(dir, 'ledger.tsv');
}

function sampled(size: number, mtimeMs = 1_712_345_678_901.1235): LedgerRecord {
  return { size, mtimeMs, outcome: 'sampled' };
}

function fileLines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').slice(1, -1);
}

/** Opens, runs, closes: the ledger a test leaves behind is on disk only. */
async function withLedger<T>(
  file: string,
  run: (ledger: Ledger) => Promise<T>,
  options?: Parameters<typeof Ledger.open>[1],
): Promise<T> {
  const ledger = await Ledger.open(file, options);
  try {
    return await run(ledger);
  } finally {
    await ledger.close();
  }
}

describe('ledger durability', () => {
  it('records survive a reopen, with the exact size and mtime', async () => {
    const file = tempLedger();
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
    const file = tempLedger();
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
    const file = tempLedger();
    await withLedger(file, async (ledger) => {
      await Promise.all([ledger.record('gone', sampled(1)), ledger.record('retry', sampled(2))]);
      await Promise.all([ledger.forget('gone'), ledger.forget('retry'), ledger.forget('never-there')]);
      expect(ledger.size).toBe(0);
      await ledger.record('retry', sampled(3));
    });
    await withLedger(file, async (ledger) => {
      expect(ledger.has('gone')).toBe(false);
      expect(ledger.get('retry')).toEqual(sampled(3));
      expect([...ledger.keys()]).toEqual(['retry']);
    });
  });

  it('close writes what is still queued, and later records are refused with SHUTDOWN', async () => {
    const file = tempLedger();
    const ledger = await Ledger.open(file);
    const pending = [ledger.record('queued-1', sampled(1)), ledger.record('queued-2', sampled(2))];
    await ledger.close();
    await Promise.all(pending);
    const late = await ledger.record('late', sampled(3)).catch((err: unknown) => err);
    expect(isFastmonError(late, 'SHUTDOWN')).toBe(true);
    await withLedger(file, async (reopened) => {
      expect([...reopened.keys()].sort()).toEqual(['queued-1', 'queued-2']);
    });
  });

  it('a torn last line is cut off on open, counted and logged, and the ledger stays usable', async () => {
    const file = tempLedger();
    await withLedger(file, async (ledger) => {
      await ledger.record('whole-1', sampled(1));
      await ledger.record('whole-2', sampled(2));
    });
    appendFileSync(file, 'sampled\t3\t17123456'); // the writer died mid-line
    const logs = captureLogs('warn');
    await withLedger(
      file,
      async (ledger) => {
        expect(ledger.loaded).toMatchObject({
          entries: 2,
          corrupt: 0,
          tornBytes: 'sampled\t3\t17123456'.length,
        });
        expect(logs.find((r) => r.ledger === file && r.level === 'warn')?.msg).toMatch(/unfinished line/);
        await ledger.record('after-crash', sampled(4));
      },
      { logger: logs.logger },
    );
    await withLedger(file, async (ledger) => {
      // The new line was not glued to the torn fragment.
      expect(ledger.loaded).toMatchObject({ entries: 3, corrupt: 0, tornBytes: 0 });
      expect(ledger.get('after-crash')).toEqual(sampled(4));
    });
  });

  it('a corrupt line in the middle is skipped with a warning; the lines around it load', async () => {
    const file = tempLedger();
    writeFileSync(
      file,
      [
        '#swf-fastmon-ledger v1',
        'sampled\t1\t2\tbefore',
        'sampled\tnot-a-size\t2\tbad-size',
        'garbage without tabs',
        'exploded\t1\t2\tbad-outcome',
        'sampled\t1\t\tno-mtime',
        'skipped\t5\t6.25\tafter',
        '',
      ].join('\n'),
    );
    const logs = captureLogs('warn');
    await withLedger(
      file,
      async (ledger) => {
        expect(ledger.loaded).toMatchObject({ entries: 2, lines: 6, corrupt: 4, tornBytes: 0 });
        expect([...ledger.keys()]).toEqual(['before', 'after']);
        expect(logs.find((r) => r.ledger === file)).toMatchObject({ count: 4, lines: [3, 4, 5, 6] });
      },
      { logger: logs.logger },
    );
  });

  it('refuses a file that is not a ledger, and leaves it untouched', async () => {
    const file = tempLedger();
    writeFileSync(file, '{"kind":"fastmon_file","tf_filename":"x"}\n');
    const err = await Ledger.open(file).catch((e: unknown) => e);
    expect(isFastmonError(err, 'LEDGER_INVALID')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('{"kind":"fastmon_file","tf_filename":"x"}\n');
  });

  it('a header cut short while the file was created opens as an empty ledger', async () => {
    const file = tempLedger();
    writeFileSync(file, '#swf-fastm');
    await withLedger(file, async (ledger) => {
      expect(ledger.size).toBe(0);
      await ledger.record('first', sampled(1));
    });
    expect(readFileSync(file, 'utf8')).toBe(
      '#swf-fastmon-ledger v1\nsampled\t1\t1712345678901.1235\tfirst\n',
    );
  });

  it('rejects options that would make compaction misbehave, naming the option', async () => {
    const err = await Ledger.open(tempLedger(), { compactAtRatio: 0.5 }).catch((e: unknown) => e);
    expect(isFastmonError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/compactAtRatio/);
  });
});

describe('ledger group commit', () => {
  it('10,000 concurrent records resolve with far fewer fsyncs, and all are there after a reopen', async () => {
    const file = tempLedger();
    const keys = Array.from(
      { length: 10_000 },
      (_, i) => `/data/run101993/swf.101993.${String(i).padStart(6, '0')}.stf`,
    );
    const syncs = await withLedger(file, async (ledger) => {
      await Promise.all(keys.map((key, i) => ledger.record(key, sampled(i))));
      return ledger.syncs;
    });
    expect(syncs).toBeLessThan(100);
    await withLedger(file, async (ledger) => {
      expect(ledger.size).toBe(10_000);
      for (const [i, key] of keys.entries()) expect(ledger.get(key)).toEqual(sampled(i));
    });
  });

  it('records made while a sync is in flight all go out in the next single write and sync', async () => {
    await withLedger(tempLedger(), async (ledger) => {
      const first = ledger.record('first', sampled(0));
      await new Promise((resolve) => setImmediate(resolve)); // the first commit is now writing or syncing
      const rest = Array.from({ length: 1000 }, (_, i) => ledger.record(`next-${i}`, sampled(i)));
      await Promise.all([first, ...rest]);
      expect(ledger.syncs).toBe(2);
      expect(ledger.size).toBe(1001);
    });
  });
});

describe('ledger compaction', () => {
  it('shrinks the file to the live entries and keeps every one with its last record', async () => {
    const file = tempLedger();
    const expected = new Map<string, LedgerRecord>();
    await withLedger(
      file,
      async (ledger) => {
        for (let version = 0; version < 4; version++) {
          await Promise.all(
            Array.from({ length: 500 }, (_, i) => {
              expected.set(`key-${i}`, sampled(version * 1000 + i));
              return ledger.record(`key-${i}`, sampled(version * 1000 + i));
            }),
          );
        }
        await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.forget(`key-${i}`)));
        for (let i = 0; i < 100; i++) expected.delete(`key-${i}`);
        expect(fileLines(file)).toHaveLength(2100);
        await ledger.compact();
        expect(ledger.lines).toBe(400);
        expect(ledger.compactions).toBe(1);
      },
      { minCompactEntries: Number.MAX_SAFE_INTEGER },
    );
    expect(fileLines(file)).toHaveLength(400);
    expect(existsSync(`${file}.compacting`)).toBe(false);
    await withLedger(file, async (ledger) => {
      expect(ledger.size).toBe(400);
      for (const [key, record] of expected) expect(ledger.get(key)).toEqual(record);
    });
  });

  it('keeps records, updates and tombstones that arrive while it runs', async () => {
    const file = tempLedger();
    const expected = new Map<string, LedgerRecord>();
    const ledger = await Ledger.open(file, { minCompactEntries: Number.MAX_SAFE_INTEGER });
    // Enough entries for the snapshot to take several writes, so the records below interleave with it.
    await Promise.all(
      Array.from({ length: 30_000 }, (_, i) => {
        expected.set(`/data/run101993/old-${i}.stf`, sampled(i));
        return ledger.record(`/data/run101993/old-${i}.stf`, sampled(i));
      }),
    );
    let compacting = true;
    let duringCompaction = 0;
    const compaction = ledger.compact().finally(() => {
      compacting = false;
    });
    const writer = async (lane: number) => {
      for (let i = 0; compacting || i < 50; i++) {
        const n = lane * 1_000_000 + i;
        if (i % 3 === 0) {
          expected.delete(`/data/run101993/old-${n % 30_000}.stf`);
          await ledger.forget(`/data/run101993/old-${n % 30_000}.stf`);
        } else if (i % 3 === 1) {
          expected.set(`/data/run101993/old-${(n + 7) % 30_000}.stf`, sampled(n));
          await ledger.record(`/data/run101993/old-${(n + 7) % 30_000}.stf`, sampled(n));
        } else {
          expected.set(`/data/run101993/new-${n}.stf`, sampled(n));
          await ledger.record(`/data/run101993/new-${n}.stf`, sampled(n));
        }
        if (compacting) duringCompaction++;
      }
    };
    await Promise.all([compaction, writer(1), writer(2), writer(3), writer(4)]);
    expect(duringCompaction).toBeGreaterThan(0);
    expect(ledger.compactions).toBe(1);
    expect(ledger.size).toBe(expected.size);
    await ledger.close();
    expect(fileLines(file)).toHaveLength(ledger.lines);
    await withLedger(file, async (reopened) => {
      expect(reopened.loaded.corrupt).toBe(0);
      expect(reopened.size).toBe(expected.size);
      for (const [key, record] of expected) expect(reopened.get(key)).toEqual(record);
    });
  });

  it('starts by itself once the file holds more than compactAtRatio lines per live entry', async () => {
    const file = tempLedger();
    await withLedger(
      file,
      async (ledger) => {
        for (let version = 0; version < 3; version++) {
          await Promise.all(Array.from({ length: 600 }, (_, i) => ledger.record(`k${i}`, sampled(version))));
        }
        await vi.waitFor(() => expect(ledger.compactions).toBeGreaterThan(0));
      },
      { compactAtRatio: 2, minCompactEntries: 1000 },
    );
    expect(fileLines(file)).toHaveLength(600);
    await withLedger(file, async (ledger) => {
      expect(ledger.size).toBe(600);
      expect(ledger.get('k599')).toEqual(sampled(2));
    });
  });
});

describe('ledger keys', () => {
  // fast-check's 'binary' unit never yields a lone surrogate, and rarely an escape character.
  const keyUnit = fc.oneof(
    fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', '\\', 'n', 'u', 'd', '0', '\n', '\r', '\t', 'ÿ'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  );
  const awkward = [
    'swf.101993.000001.stf',
    'line\nbreak',
    'carriage\r\nreturn',
    'tab\tinside\t',
    'back\\slash',
    'looks\\nescaped', // a backslash and an n: must stay apart from 'looks\nescaped'
    'looks\nescaped',
    '\\u00e9',
    'ünïcödé/日本語/😀.stf',
    Buffer.from([0x73, 0x77, 0x66, 0xff, 0xfe, 0x80, 0x0a, 0x09]).toString('latin1'), // a non-UTF-8 name
    'lone\ud800surrogate',
    '\udc00',
    '',
    ' leading and trailing ',
  ];

  it('keys with newlines, tabs, backslashes, non-ASCII, latin1 bytes and lone surrogates round-trip', async () => {
    const file = tempLedger();
    await withLedger(file, async (ledger) => {
      await Promise.all(awkward.map((key, i) => ledger.record(key, sampled(i))));
    });
    expect(fileLines(file)).toHaveLength(awkward.length);
    for (const compact of [false, true]) {
      await withLedger(file, async (ledger) => {
        expect(ledger.loaded.corrupt).toBe(0);
        expect([...ledger.keys()]).toEqual(awkward);
        for (const [i, key] of awkward.entries()) expect(ledger.get(key)).toEqual(sampled(i));
        if (compact) await ledger.compact();
      });
    }
  });

  it('a key longer than the read and write buffers round-trips, also through compaction', async () => {
    const file = tempLedger();
    const long = `${'x'.repeat(5 << 20)}\n${'é'.repeat(1000)}`;
    await withLedger(file, async (ledger) => {
      await Promise.all([ledger.record('short', sampled(1)), ledger.record(long, sampled(2))]);
    });
    for (const compact of [true, false]) {
      await withLedger(file, async (ledger) => {
        expect(ledger.loaded.corrupt).toBe(0);
        expect(ledger.get(long)).toEqual(sampled(2));
        expect([...ledger.keys()].map((key) => key.length)).toEqual([5, long.length]);
        if (compact) await ledger.compact();
      });
    }
  });

  it('escaping is reversible, leaves no line break or lone surrogate, and keeps distinct keys distinct', () => {
    fc.assert(
      fc.property(fc.string({ unit: keyUnit }), fc.string({ unit: keyUnit }), (a, b) => {
        expect(unescapeKey(escapeKey(a))).toBe(a);
        expect(escapeKey(a)).not.toMatch(/[\n\r]/);
        expect(Buffer.from(escapeKey(a), 'utf8').toString('utf8')).toBe(escapeKey(a));
        if (a !== b) expect(escapeKey(a)).not.toBe(escapeKey(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('any set of keys survives a reopen', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: keyUnit, maxLength: 30 }), { maxLength: 40 }),
        async (keys) => {
          const file = tempLedger();
          await withLedger(file, (ledger) =>
            Promise.all(keys.map((key, i) => ledger.record(key, sampled(i)))),
          );
          await withLedger(file, async (ledger) => {
            expect([...ledger.keys()]).toEqual(keys);
            for (const [i, key] of keys.entries()) expect(ledger.get(key)).toEqual(sampled(i));
          });
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('ledger under kill -9', () => {
  // A writer in its own process, with eight concurrent lanes so that commits hold several records.
  const WRITER = `
    const [moduleUrl, file, round] = process.argv.slice(1);
    const { Ledger } = await import(moduleUrl);
    const ledger = await Ledger.open(file);
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
      ['--input-type=module', '-e', WRITER, pathToFileURL(COMPILED).href, file, String(round)],
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
    expect(existsSync(COMPILED), `${COMPILED} is missing: run npx tsc -p tsconfig.json`).toBe(true);
    const file = tempLedger();
    const acknowledged: string[] = [];
    for (let round = 0; round < 3; round++) {
      acknowledged.push(...(await writeUntilKilled(file, round, 1500 + round * 700)));
      await withLedger(file, async (ledger) => {
        expect(ledger.loaded.corrupt).toBe(0);
        const missing = acknowledged.filter((key) => !ledger.has(key));
        expect(missing).toEqual([]);
      });
    }
    expect(acknowledged.length).toBeGreaterThan(3000);
  });
});

describe('ledger at scale', () => {
  it('loads a million entries written directly to the file', async () => {
    const file = tempLedger();
    const key = (i: number) => `/data/epic/run101993/swf.101993.${String(i).padStart(6, '0')}.stf.0001`;
    const parts = ['#swf-fastmon-ledger v1\n'];
    for (let start = 0; start < 1_000_000; start += 10_000) {
      let chunk = '';
      for (let i = start; i < start + 10_000; i++)
        chunk += `sampled\t${i}\t${1_712_345_678_901.1235 + i}\t${key(i)}\n`;
      parts.push(chunk);
    }
    writeFileSync(file, parts.join(''));
    parts.length = 0;
    await withLedger(file, async (ledger) => {
      console.log(`ledger: 1,000,000 entries loaded in ${ledger.loaded.ms} ms`);
      expect(ledger.size).toBe(1_000_000);
      expect(ledger.loaded.corrupt).toBe(0);
      for (const i of [0, 1, 499_999, 999_999])
        expect(ledger.get(key(i))).toEqual(sampled(i, 1_712_345_678_901.1235 + i));
      expect(ledger.has(key(1_000_000))).toBe(false);
    });
    rmSync(file);
  }, 120_000);
});
