// The command line as a new user meets it: help per command, mistakes refused before anything starts, stops on signals.

import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const started = startCli(args, { FASTMON_HTTP_PORT: '-1', ...env }, cwd);
  const code = await started.exited;
  return { code, ...started.out };
}

function emptyDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'fastmon-cmdline-'));
}

/** A user's mistake: exit 2, one line naming the code, no stack trace. */
function expectRefused(r: Run, code: string, text: string | RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toContain(`swf-fastmon: ${code}: `);
  expect(lines[0]).toMatch(text);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('help and usage', () => {
  it('without a command, prints the usage on stderr and exits 2', async () => {
    const r = await run([], emptyDir());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Usage: swf-fastmon <command>/m);
  });

  it('gen --help lists each of its options once, and none of the agent-only keys', async () => {
    const { code, stdout } = await run(['gen', '--help'], emptyDir());
    expect(code).toBe(0);
    const count = (flag: string) => stdout.split('\n').filter((l) => l.trimStart().startsWith(flag)).length;
    expect(count('--out ')).toBe(1);
    expect(count('--seed ')).toBe(1);
    expect(count('--broker-host ')).toBe(1);
    for (const absent of ['--tf-files-per-stf', '--pattern', '--mode', '--subscription', '--dead-letter'])
      expect(stdout).not.toContain(absent);
  });

  it('scan --help offers the scan keys but not --mode or --dead-letter', async () => {
    const { code, stdout } = await run(['scan', '--help'], emptyDir());
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}--shard VALUE/m);
    expect(stdout).toMatch(/^ {2}--pattern VALUE/m);
    expect(stdout).not.toContain('--mode');
    expect(stdout).not.toContain('--dead-letter');
    const refused = await run(['scan', '--mode', 'message', '.'], emptyDir());
    expectRefused(refused, 'CONFIG_INVALID', /scan: unknown option '--mode'/);
  });

  it('catalog --help offers the store and --last, nothing of the broker; agent and scan take --monitor-db', async () => {
    const catalog = await run(['catalog', '--help'], emptyDir());
    expect(catalog.code).toBe(0);
    expect(catalog.stdout).toMatch(/^ {2}--catalog VALUE/m);
    expect(catalog.stdout).toMatch(/^ {2}--last N/m);
    expect(catalog.stdout).not.toContain('--broker-host');
    const refused = await run(['catalog', '--broker-host', 'x'], emptyDir());
    expectRefused(refused, 'CONFIG_INVALID', /catalog: unknown option '--broker-host'/);
    const last = await run(['catalog', '--last', '-1'], emptyDir());
    expectRefused(last, 'CONFIG_INVALID', /catalog: --last: expected a number >= 0, got "-1"/);
    for (const command of ['agent', 'scan', 'watch']) {
      const r = await run([command, '--help'], emptyDir());
      expect(r.stdout, command).toMatch(/^ {2}--monitor-db VALUE/m);
    }
  });

  it('-h is help in every command, the client included', async () => {
    for (const command of ['agent', 'scan', 'watch', 'gen', 'client', 'catalog']) {
      const r = await run([command, '-h'], emptyDir());
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: swf-fastmon ${command} `));
    }
  });
});

describe('mistakes refused before anything starts', () => {
  it('scan --shard 3/3 and --pattern x/*.stf are refused without creating the ledger or the catalog', async () => {
    const cwd = emptyDir();
    mkdirSync(path.join(cwd, 'data'));
    const shard = await run(['scan', '--shard', '3/3', 'data'], cwd);
    expectRefused(shard, 'CONFIG_INVALID', /scan\.shard \(flag --shard\): shard "3\/3": i must be below N/);
    const pattern = await run(['scan', '--pattern', 'x/*.stf', 'data'], cwd);
    expectRefused(pattern, 'CONFIG_INVALID', /file pattern "x\/\*\.stf": must be a non-empty base-name glob/);
    expect(shard.stdout + pattern.stdout).not.toContain('scan finished');
    expect(readdirSync(cwd)).toEqual(['data']);
  });

  it('agent --replay of a missing file is a coded error and nothing starts', async () => {
    const cwd = emptyDir();
    const r = await run(['agent', '--replay', 'nope.jsonl'], cwd);
    expectRefused(r, 'INPUT_UNREADABLE', /--replay .*nope\.jsonl: does not exist \(ENOENT\)/);
    expect(r.stdout).toBe('');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('gen --out naming an existing file is a coded error without a stack trace', async () => {
    const cwd = emptyDir();
    writeFileSync(path.join(cwd, 'taken'), 'x');
    const r = await run(['gen', '--out', 'taken', '--run', '1', '--count', '1'], cwd);
    expectRefused(r, 'OUTPUT_UNWRITABLE', /gen --out .*taken: exists and is not a directory/);
  });

  it('a missing scan directory and a file given as one are named as such', async () => {
    const cwd = emptyDir();
    writeFileSync(path.join(cwd, 'plain'), 'x');
    const missing = await run(['scan', 'absent'], cwd);
    expectRefused(missing, 'INPUT_UNREADABLE', /scan directory .*absent: does not exist \(ENOENT\)/);
    const notDir = await run(['watch', 'plain'], cwd);
    expectRefused(notDir, 'INPUT_UNREADABLE', /watch directory .*plain: not a directory \(ENOTDIR\)/);
    expect(readdirSync(cwd)).toEqual(['plain']);
  });

  it('an option value that starts with a dash is still a value (--http-port -1)', async () => {
    const r = await run(['agent', '--print-config', '--http-port', '-1'], emptyDir());
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).agent.http_port).toBe(-1);
  });
});

describe('the client stops', () => {
  // Before, a failed source left the client running with its first SIGTERM swallowed; now the
  // failure itself ends it, so no state is left in which a signal could be lost.
  it('exits by itself within 5 s when its source failed, with or without the dashboard', async () => {
    for (const extra of [[], ['--dashboard']]) {
      const started = Date.now();
      const { proc, out, exited } = startCli(['client', '--catalog', 'nope.jsonl', ...extra], {}, emptyDir());
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(timer);
      expect(code, out.stderr).toBe(1);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(out.stderr).toMatch(/swf-fastmon: CLIENT_SOURCE_FAILED: cannot read catalog .*nope\.jsonl/);
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`exits 0 with its summary within 5 s on ${signal} while the broker is unreachable`, async () => {
      const { proc, out, exited } = startCli(
        ['client', '--host', '127.0.0.1', '--port', '1'],
        {},
        emptyDir(),
      );
      await waitFor(() => out.stderr.includes('reconnecting'), 'a refused connection');
      const started = Date.now();
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(timer);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(code, out.stderr).toBe(0);
      expect(out.stdout).toContain('swf-fastmon client summary');
    });
  }
});

describe('what a scan says about itself', () => {
  it('logs its input as scan, not agent.mode, and does not call runs found on disk imminent', async () => {
    const cwd = emptyDir();
    const gen = await run(
      ['gen', '--out', 'data', '--run', '100777', '--count', '2', '--tfs-per-stf', '20'],
      cwd,
    );
    expect(gen.code, gen.stderr).toBe(0);
    const scan = await run(['scan', 'data'], cwd, { SWF_LOG_LEVEL: 'INFO' });
    expect(scan.code, scan.stderr).toBe(0);
    expect(scan.stderr).toContain('"input":"scan"');
    expect(scan.stderr).not.toContain('"mode":');
    expect(scan.stdout).toMatch(/run 100777 \(no run messages seen\): 2 STFs received, 2 sampled/);
    expect(scan.stdout).not.toContain('(imminent)');
  });
});

describe('every command stops on the first signal, also while the broker does not answer', () => {
  const unreachable = ['--broker-host', '127.0.0.1', '--broker-port', '1'];
  const cases: { name: string; args: (dir: string) => string[]; code: number }[] = [
    { name: 'agent', args: () => ['agent', ...unreachable, '--catalog', 'c.jsonl'], code: 0 },
    {
      name: 'scan',
      args: (dir) => ['scan', ...unreachable, '--catalog', 'c.jsonl', '--ledger', 'l.tsv', dir],
      code: 143,
    },
    {
      name: 'gen --publish',
      args: () => ['gen', '--out', 'g', '--run', '7', '--count', '2', '--publish', ...unreachable],
      code: 143,
    },
  ];
  for (const c of cases) {
    it(`${c.name} exits ${c.code} within 5 s of SIGTERM`, async () => {
      const cwd = emptyDir();
      mkdirSync(path.join(cwd, 'data'));
      const { proc, out, exited } = startCli(c.args('data'), { FASTMON_HTTP_PORT: '-1' }, cwd);
      await waitFor(() => out.stderr.includes('reconnecting'), `${c.name} to retry the broker`);
      const started = Date.now();
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(timer);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(code, out.stderr.slice(-2000)).toBe(c.code);
    });
  }
});
