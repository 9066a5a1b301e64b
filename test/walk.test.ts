import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { isFastmonError } from '../src/errors.js';
import {
  compilePatterns,
  DEFAULT_PATTERNS,
  inShard,
  parseShard,
  type Shard,
  withinLookback,
} from '../src/inputs/select.js';
import { type WalkEntry, type WalkFile, type WalkOptions, type WalkSkip, walk } from '../src/inputs/walk.js';

const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) {
    chmodTree(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-walk-'));
  temps.push(dir);
  return dir;
}

/** Writes files (content 'x' unless given) and creates their directories; `null` makes a directory. */
function tree(root: string, files: Record<string, string | null>): string {
  for (const [rel, content] of Object.entries(files)) {
    const full = path.join(root, rel);
    if (content === null) {
      mkdirSync(full, { recursive: true });
    } else {
      mkdirSync(path.dirname(full), { recursive: true });
      writeFileSync(full, content);
    }
  }
  return root;
}

const stfOnly = compilePatterns(DEFAULT_PATTERNS);

async function collect(roots: string[], options: Partial<WalkOptions> = {}): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  for await (const entry of walk(roots, { recursive: true, match: stfOnly, ...options })) out.push(entry);
  return out;
}

const files = (entries: WalkEntry[]): WalkFile[] => entries.filter((e): e is WalkFile => e.kind === 'file');
const skips = (entries: WalkEntry[]): WalkSkip[] => entries.filter((e): e is WalkSkip => e.kind === 'skip');
const relatives = (entries: WalkEntry[]): string[] =>
  files(entries)
    .map((f) => f.relative)
    .sort();

describe('file patterns', () => {
  it('takes *.stf and *.STF, but not *.Stf, unfinished writes or hidden temporaries', async () => {
    const root = tree(tempDir(), {
      'swf.101993.000001.stf': 'x',
      'SWF.101993.000002.STF': 'x',
      'swf.101993.000003.Stf': 'x',
      'x.stf.tmp': 'x',
      '.swf.1.2.stf.tmp-123': 'x',
      '.swf.1.2.stf': 'x',
      'notes.txt': 'x',
    });
    expect(relatives(await collect([root]))).toEqual(['SWF.101993.000002.STF', 'swf.101993.000001.stf']);
  });

  it('understands ?, sets, ranges and negated sets, and takes everything else literally', () => {
    const m = compilePatterns(['swf.??.stf', 'run[0-9].[!t]*', 'a+b(1)[]].stf', 'open[x']);
    expect(m('swf.01.stf')).toBe(true);
    expect(m('swf.001.stf')).toBe(false);
    expect(m('run7.stf')).toBe(true);
    expect(m('run7.tf')).toBe(false);
    expect(m('runx.stf')).toBe(false);
    expect(m('a+b(1)].stf')).toBe(true);
    expect(m('aab(1)].stf')).toBe(false);
    expect(m('open[x')).toBe(true);
    expect(compilePatterns(['.*.tmp'])('.swf.tmp')).toBe(true);
    expect(compilePatterns(['?.stf'])('é.stf')).toBe(true);
  });

  it('refuses an empty list or a pattern with a directory part, naming it', () => {
    expect(() => compilePatterns([])).toThrow(/empty/);
    expect(() => compilePatterns(['run1/*.stf'])).toThrow(/run1\/\*\.stf/);
  });
});

describe('shards', () => {
  it('parses i/N and names the value it refuses', () => {
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard('4/5')).toEqual({ index: 4, count: 5 });
    for (const bad of ['5/5', '1/0', '-1/3', 'a/b', '3', '1/2/3', '']) {
      let caught: unknown;
      try {
        parseShard(bad);
      } catch (err) {
        caught = err;
      }
      expect(isFastmonError(caught, 'CONFIG_INVALID')).toBe(true);
      expect((caught as Error).message).toContain(`"${bad}"`);
    }
  });

  it('gives every file to exactly one of N agents, for N from 1 to 5', async () => {
    const layout: Record<string, string> = {};
    for (let d = 0; d < 6; d++) {
      for (let f = 0; f < 40; f++)
        layout[`run${d}/sub${f % 3}/swf.10000${d}.${String(f).padStart(6, '0')}.stf`] = 'x';
    }
    const all = files(await collect([tree(tempDir(), layout)]));
    expect(all).toHaveLength(240);
    for (let count = 1; count <= 5; count++) {
      const owners = all.map((f) => shardsOf(f.relative, count));
      expect(owners.every((o) => o.length === 1)).toBe(true);
      // Every shard gets some of 240 files: the hash spreads them.
      expect(new Set(owners.flat()).size).toBe(count);
    }
  });

  it('assigns a file by its path below the root, whatever the mount point', async () => {
    const layout = { 'a/swf.1.000001.stf': 'x', 'a/b/swf.1.000002.stf': 'x', 'swf.1.000003.stf': 'x' };
    for (let i = 4; i < 40; i++)
      Object.assign(layout, { [`c/swf.1.${String(i).padStart(6, '0')}.stf`]: 'x' });
    const here = tree(tempDir(), layout);
    const there = tree(path.join(tempDir(), 'mnt', 'daq', 'buffer'), layout);
    const assign = async (root: string) =>
      Object.fromEntries(files(await collect([root])).map((f) => [f.relative, shardsOf(f.relative, 3)]));
    expect(await assign(there)).toEqual(await assign(here));
  });

  it('hashes the relative path reproducibly (sha256 | first 4 bytes | mod N)', () => {
    // printf %s run1/swf.100001.000001.stf | sha256sum → 144ede5c…; 0x144ede5c mod 4 = 0, mod 7 = 1.
    expect(shardsOf('run1/swf.100001.000001.stf', 4)).toEqual([0]);
    expect(shardsOf('run1/swf.100001.000001.stf', 7)).toEqual([1]);
    // printf %s swf.100001.000002.stf | sha256sum → a69bec9e…; mod 4 = 2, mod 7 = 3.
    expect(shardsOf('swf.100001.000002.stf', 4)).toEqual([2]);
    expect(shardsOf('swf.100001.000002.stf', 7)).toEqual([3]);
  });
});

function shardsOf(relative: string, count: number): number[] {
  const owners: number[] = [];
  for (let index = 0; index < count; index++) {
    const shard: Shard = { index, count };
    if (inShard(relative, shard)) owners.push(index);
  }
  return owners;
}

describe('walk', () => {
  it('descends into subdirectories only when recursive', async () => {
    const root = tree(tempDir(), {
      'a.stf': 'x',
      'sub/b.stf': 'x',
      'sub/deeper/c.STF': 'x',
      'empty/': null,
    });
    expect(relatives(await collect([root]))).toEqual(['a.stf', 'sub/b.stf', 'sub/deeper/c.STF']);
    expect(relatives(await collect([root], { recursive: false }))).toEqual(['a.stf']);
  });

  it('reports absolute paths, sizes, times and identities of the files it yields', async () => {
    const root = tree(tempDir(), { 'run1/swf.1.000001.stf': 'twelve bytes' });
    const relativeRoot = path.relative(process.cwd(), root);
    const [entry] = await collect([relativeRoot]);
    const info = statSync(path.join(root, 'run1/swf.1.000001.stf'));
    expect(entry).toEqual({
      kind: 'file',
      root,
      path: `${root}/run1/swf.1.000001.stf`,
      relative: 'run1/swf.1.000001.stf',
      name: 'swf.1.000001.stf',
      size: 12,
      mtimeMs: info.mtimeMs,
      ino: info.ino,
      dev: info.dev,
      local: true,
    });
  });

  it('walks several roots in turn, each with its own relative paths', async () => {
    const a = tree(tempDir(), { 'x/one.stf': 'x' });
    const b = tree(tempDir(), { 'x/two.stf': 'x' });
    const entries = files(await collect([a, b]));
    expect(entries.map((e) => [e.root, e.relative])).toEqual([
      [a, 'x/one.stf'],
      [b, 'x/two.stf'],
    ]);
  });

  it('keeps only files touched within the lookback window (0: no cut)', async () => {
    const now = Date.now();
    const root = tree(tempDir(), { 'old.stf': 'x', 'recent.stf': 'x', 'future.stf': 'x' });
    utimesSync(path.join(root, 'old.stf'), new Date(now - 2 * 3600_000), new Date(now - 2 * 3600_000));
    utimesSync(path.join(root, 'recent.stf'), new Date(now - 5 * 60_000), new Date(now - 5 * 60_000));
    utimesSync(path.join(root, 'future.stf'), new Date(now + 60_000), new Date(now + 60_000));
    const found = files(await collect([root]));
    const kept = (minutes: number) =>
      found
        .filter((f) => withinLookback(f.mtimeMs, now, minutes))
        .map((f) => f.name)
        .sort();
    expect(kept(60)).toEqual(['future.stf', 'recent.stf']);
    expect(kept(4)).toEqual(['future.stf']);
    expect(kept(0)).toEqual(['future.stf', 'old.stf', 'recent.stf']);
  });

  it('stops early and quietly when aborted', async () => {
    const layout: Record<string, string> = {};
    for (let i = 0; i < 200; i++) layout[`d${i % 4}/f${i}.stf`] = 'x';
    const root = tree(tempDir(), layout);
    const stop = new AbortController();
    let seen = 0;
    for await (const _ of walk([root], { recursive: true, match: stfOnly, signal: stop.signal })) {
      seen++;
      if (seen === 3) stop.abort();
    }
    expect(seen).toBe(3);
  });
});

// Both ways of listing: synchronous calls (a local file system, what tmpdir is) and overlapped
// asynchronous ones (what a network file system gets).
describe.each([
  { way: 'synchronous', overlapStats: false },
  { way: 'overlapped', overlapStats: true },
])(
  'walk over bad input ($way stats): logged with a reason, counted, skipped, never thrown',
  ({ overlapStats }) => {
    const collectThisWay = (roots: string[], options: Partial<WalkOptions> = {}) =>
      collect(roots, { overlapStats, ...options });

    it('skips a zero-byte file as ZERO_BYTE', async () => {
      const root = tree(tempDir(), { 'empty.stf': '', 'full.stf': 'x' });
      const entries = await collectThisWay([root]);
      expect(relatives(entries)).toEqual(['full.stf']);
      expect(skips(entries)).toEqual([
        { kind: 'skip', path: `${root}/empty.stf`, reason: 'ZERO_BYTE', message: 'empty file' },
      ]);
    });

    it('skips names that are not UTF-8 as NOT_UTF8, shown percent-escaped, and does not enter such directories', async () => {
      const root = tree(tempDir(), { 'ok.stf': 'x' });
      const bytes = (...b: number[]) => Buffer.concat([Buffer.from(`${root}/`), Buffer.from(b)]);
      writeFileSync(bytes(0x73, 0x77, 0x66, 0xff, 0x2e, 0x73, 0x74, 0x66), 'x'); // swf\xff.stf
      writeFileSync(bytes(0x6e, 0x6f, 0x74, 0x65, 0xfe), 'x'); // note\xfe: matches no pattern, ignored
      mkdirSync(bytes(0x64, 0x69, 0x72, 0xc3)); // dir\xc3: a truncated UTF-8 sequence
      writeFileSync(Buffer.concat([bytes(0x64, 0x69, 0x72, 0xc3), Buffer.from('/inside.stf')]), 'x');
      const entries = await collectThisWay([root]);
      expect(relatives(entries)).toEqual(['ok.stf']);
      expect(
        skips(entries)
          .map((s) => [s.reason, s.path])
          .sort(),
      ).toEqual([
        ['NOT_UTF8', `${root}/dir%C3`],
        ['NOT_UTF8', `${root}/swf%FF.stf`],
      ]);
      // Not recursive: the directory is not a candidate, so it is not reported.
      expect(skips(await collectThisWay([root], { recursive: false })).map((s) => s.path)).toEqual([
        `${root}/swf%FF.stf`,
      ]);
    });

    it('does not follow symlinks by default; following, takes links to files and reports dangling ones', async () => {
      const root = tree(tempDir(), { 'real.stf': 'x', 'elsewhere/target.stf': 'x' });
      symlinkSync(path.join(root, 'real.stf'), path.join(root, 'link.stf'));
      symlinkSync(path.join(root, 'nowhere.stf'), path.join(root, 'dangling.stf'));
      symlinkSync(path.join(root, 'elsewhere'), path.join(root, 'linked-dir'));
      symlinkSync('b.stf', path.join(root, 'a.stf'));
      symlinkSync('a.stf', path.join(root, 'b.stf'));

      const plain = await collectThisWay([root]);
      expect(relatives(plain)).toEqual(['elsewhere/target.stf', 'real.stf']);
      expect(
        skips(plain)
          .map((s) => [s.reason, path.basename(s.path)])
          .sort(),
      ).toEqual([
        ['NOT_A_FILE', 'a.stf'],
        ['NOT_A_FILE', 'b.stf'],
        ['NOT_A_FILE', 'dangling.stf'],
        ['NOT_A_FILE', 'link.stf'],
      ]);

      const followed = await collectThisWay([root], { followSymlinks: true });
      expect(relatives(followed)).toEqual([
        'elsewhere/target.stf',
        'link.stf',
        'linked-dir/target.stf',
        'real.stf',
      ]);
      expect(
        skips(followed)
          .map((s) => [s.reason, path.basename(s.path)])
          .sort(),
      ).toEqual([
        ['ELOOP', 'a.stf'],
        ['ELOOP', 'b.stf'],
        ['ENOENT', 'dangling.stf'],
      ]);
    });

    it('reports a symlink back to an ancestor once as ELOOP and terminates', async () => {
      const root = tree(tempDir(), { 'dir/x.stf': 'x', 'dir/sub/y.stf': 'x' });
      const dir = path.join(root, 'dir');
      symlinkSync(dir, path.join(dir, 'link'));
      symlinkSync('../..', path.join(dir, 'sub', 'up'));

      const followed = await collectThisWay([dir], { followSymlinks: true });
      expect(relatives(followed)).toEqual(['sub/y.stf', 'x.stf']);
      expect(skips(followed).map((s) => [s.reason, s.path.slice(dir.length)])).toEqual(
        expect.arrayContaining([
          ['ELOOP', '/link'],
          ['ELOOP', '/sub/up/dir'],
        ]),
      );
      // `up` leads to `root`, not an ancestor of `dir`; from there `dir` is an ancestor again.
      expect(skips(followed)).toHaveLength(2);

      // Without following, the links are neither entered nor reported (their names match no pattern).
      const plain = await collectThisWay([dir]);
      expect(relatives(plain)).toEqual(['sub/y.stf', 'x.stf']);
      expect(skips(plain)).toEqual([]);
    });

    it('reports a FIFO with a matching name as NOT_A_FILE', async () => {
      const root = tree(tempDir(), { 'real.stf': 'x' });
      execFileSync('mkfifo', [path.join(root, 'pipe.stf')]);
      const entries = await collectThisWay([root]);
      expect(relatives(entries)).toEqual(['real.stf']);
      expect(skips(entries).map((s) => [s.reason, s.path])).toEqual([['NOT_A_FILE', `${root}/pipe.stf`]]);
    });

    it('reports a root that is missing or not a directory, and walks the other roots', async () => {
      const good = tree(tempDir(), { 'a.stf': 'x' });
      const missing = path.join(tempDir(), 'missing');
      const file = path.join(good, 'a.stf');
      const entries = await collectThisWay([missing, file, good]);
      expect(relatives(entries)).toEqual(['a.stf']);
      expect(skips(entries).map((s) => [s.reason, s.path])).toEqual([
        ['ENOENT', missing],
        ['ENOTDIR', file],
      ]);
    });

    it('reports a file deleted between the listing and its stat as ENOENT', async () => {
      const root = tree(tempDir(), { 'gone.stf': 'x', 'stays.stf': 'x' });
      // `match` runs after the directory was listed and before the stat: the one moment to delete.
      const match = (name: string) => {
        if (name === 'gone.stf') unlinkSync(path.join(root, name));
        return stfOnly(name);
      };
      const entries = await collectThisWay([root], { match });
      expect(relatives(entries)).toEqual(['stays.stf']);
      expect(skips(entries).map((s) => [s.reason, s.path])).toEqual([['ENOENT', `${root}/gone.stf`]]);
    });

    it('reports directories that vanish mid-walk once each, and goes on', async () => {
      const layout: Record<string, string> = {};
      for (let d = 0; d < 10; d++) layout[`d${d}/d${d}.stf`] = 'x';
      const root = tree(tempDir(), layout);
      let first: string | null = null;
      // The first file seen deletes every other directory: all ten names are already listed (one read of
      // the root), so the walk meets nine directories that no longer exist.
      const match = (name: string) => {
        if (first === null) {
          first = name.slice(0, -4);
          for (let d = 0; d < 10; d++)
            if (`d${d}` !== first) rmSync(path.join(root, `d${d}`), { recursive: true });
        }
        return stfOnly(name);
      };
      const entries = await collectThisWay([root], { match });
      expect(relatives(entries)).toEqual([`${first}/${first}.stf`]);
      const vanished = skips(entries);
      expect(vanished.every((s) => s.reason === 'ENOENT')).toBe(true);
      expect(new Set(vanished.map((s) => path.basename(s.path))).size).toBe(9);
      expect(vanished).toHaveLength(9);
    });

    it('reports an unreadable directory once as EACCES and walks the rest', async () => {
      const root = tree(tempDir(), { 'open/a.stf': 'x', 'locked/b.stf': 'x', 'c.stf': 'x' });
      chmodSync(path.join(root, 'locked'), 0o000);
      // root ignores permission bits, so as root the walk runs in a child process as `nobody` (65534).
      const entries = process.getuid?.() === 0 ? await collectAsNobody(root) : await collectThisWay([root]);
      expect(relatives(entries)).toEqual(['c.stf', 'open/a.stf']);
      expect(skips(entries).map((s) => [s.reason, s.path])).toEqual([['EACCES', `${root}/locked`]]);
    });
  },
);

/**
 * The same walk (`*.stf`, recursive) in a child process running as uid/gid 65534. walk.ts imports only
 * node: modules, so transpiling it alone gives a runnable module.
 */
async function collectAsNobody(root: string): Promise<WalkEntry[]> {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  let parent = root;
  while (parent !== tmpdir() && parent !== '/') {
    chmodSync(parent, (statSync(parent).mode & 0o7777) | 0o055);
    parent = path.dirname(parent);
  }
  const source = readFileSync(new URL('../src/inputs/walk.ts', import.meta.url), 'utf8');
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(path.join(dir, 'walk.mjs'), js);
  const script = [
    `import { walk } from ${JSON.stringify(pathToFileURL(path.join(dir, 'walk.mjs')).href)};`,
    'const out = [];',
    `for await (const e of walk([${JSON.stringify(root)}], { recursive: true, match: (n) => n.endsWith('.stf') }))`,
    '  out.push(e);',
    'process.stdout.write(JSON.stringify(out));',
  ].join('\n');
  const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    uid: 65534,
    gid: 65534,
    cwd: dir,
    encoding: 'utf8',
    timeout: 20_000,
  });
  return JSON.parse(stdout) as WalkEntry[];
}

describe('walk at scale', () => {
  it('yields each of 100,000 files exactly once, in flat memory', { timeout: 120_000 }, async () => {
    const root = tempDir();
    const dirs = 100;
    const perDir = 1000;
    const t0 = performance.now();
    // Hard links to one non-matching file per directory: a link is one metadata update, where creating
    // 100,000 inodes takes 5 s on an idle disk and over a minute on a busy one. Each name is still its
    // own directory entry to list and stat.
    for (let d = 0; d < dirs; d++) {
      const dir = path.join(root, `run${d}`);
      mkdirSync(dir);
      const seed = path.join(dir, 'seed.dat');
      writeFileSync(seed, `run ${d}`);
      for (let f = 0; f < perDir; f++) linkSync(seed, path.join(dir, `swf.${d}.${f}.stf`));
    }
    const built = performance.now() - t0;

    // A bitmap instead of a Set of paths, so that checking the result does not itself grow the heap.
    const seen = new Uint8Array(dirs * perDir);
    let yielded = 0;
    let duplicates = 0;
    // Retained heap (after a forced gc) every 20,000 files: flat if the walk keeps nothing per file.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const retained = (): number => {
      gc();
      return process.memoryUsage().heapUsed;
    };
    const samples = [retained()];
    const t1 = performance.now();
    for await (const entry of walk([root], { recursive: true, match: stfOnly })) {
      if (entry.kind !== 'file') continue;
      const [, d, f] = entry.name.split('.');
      const slot = Number(d) * perDir + Number(f);
      if (seen[slot]) duplicates++;
      seen[slot] = 1;
      if (++yielded % 20_000 === 0) samples.push(retained());
    }
    const walked = performance.now() - t1;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(2);
    console.log(
      `100k tree: built in ${(built / 1000).toFixed(1)} s; walked in ${(walked / 1000).toFixed(1)} s ` +
        `(${Math.round((yielded / walked) * 1000)} files/s, including ${samples.length} forced gcs); ` +
        `retained heap at 0, 20k, … 100k files: ${samples.map(mb).join(', ')} MB`,
    );
    expect(yielded).toBe(dirs * perDir);
    expect(duplicates).toBe(0);
    expect(seen.every((bit) => bit === 1)).toBe(true);
  });
});

/** Makes everything under `dir` removable again (a test may have locked a directory). */
function chmodTree(dir: string): void {
  try {
    execFileSync('chmod', ['-R', 'u+rwx', dir], { stdio: 'ignore' });
  } catch {
    // best effort: rmSync reports what is left
  }
}
