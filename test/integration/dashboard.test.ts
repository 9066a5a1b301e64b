// The real Dashboard in a real terminal: tmux runs test/support/dashboard-driver.mjs and we read its screen.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/logger.js';
import { CatalogRegistrar } from '../../src/sinks/catalog.js';
import { Store } from '../../src/store/store.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DRIVER = path.join(ROOT, 'test/support/dashboard-driver.mjs');
// A server of our own, on its own socket in a directory of our own, so that nothing touches the tmux sessions
// of whoever runs the tests and nothing is left behind.
const SOCKET_DIR = mkdtempSync(path.join(tmpdir(), 'fastmon-tmux-'));
const SOCKET = path.join(SOCKET_DIR, 'socket');
const SESSION = 'dash';

const tmuxPath = spawnSync('which', ['tmux'], { encoding: 'utf8' }).stdout.trim();

function tmux(...args: string[]): string {
  const r = spawnSync('tmux', ['-S', SOCKET, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

function screen(): string[] {
  return tmux('capture-pane', '-p', '-t', SESSION).replace(/\n+$/, '').split('\n');
}

async function waitFor(
  what: string,
  test: (lines: string[]) => boolean,
  timeoutMs = 15_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let lines: string[] = [];
  while (Date.now() < deadline) {
    lines = screen();
    if (test(lines)) return lines;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; screen:\n${lines.join('\n')}`);
}

function paneFlag(format: string): string {
  return tmux('display-message', '-p', '-t', SESSION, format).trim();
}

describe('client dashboard in a terminal (tmux)', () => {
  beforeAll(() => {
    if (!tmuxPath) return;
    // The driver imports the compiled modules; `npx vitest` does not build (npm test's pretest does).
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
    if (!existsSync(path.join(ROOT, 'dist/src/client/dashboard.js'))) {
      throw new Error(`tsc did not produce dist/src/client/dashboard.js:\n${build.stdout}${build.stderr}`);
    }
  }, 120_000);

  afterAll(() => {
    if (tmuxPath) spawnSync('tmux', ['-S', SOCKET, 'kill-server']);
    rmSync(SOCKET_DIR, { recursive: true, force: true });
  });

  it('shows the run table, the sparkline and the histogram, follows resizes and restores the screen', async () => {
    if (!tmuxPath) {
      throw new Error(
        'tmux is not installed, and this test renders the dashboard in a real terminal through it. ' +
          'Install it with `apt-get install -y tmux` (CI: test/setup/tools.sh).',
      );
    }
    tmux(
      'new-session',
      '-d',
      '-s',
      SESSION,
      '-x',
      '120',
      '-y',
      '40',
      `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(DRIVER)}`,
      ';',
      'set-option',
      '-t',
      SESSION,
      'remain-on-exit',
      'on',
    );

    // A frame can be caught half drawn: wait until its last rows are on the screen.
    const lines = await waitFor(
      'the full dashboard',
      (l) => l.some((x) => x.startsWith('SAMPLE SIZES')) && l.some((x) => /128-256 KiB .*%$/.test(x)),
    );
    const text = lines.join('\n');
    expect(paneFlag('#{alternate_on}')).toBe('1');
    expect(paneFlag('#{cursor_flag}')).toBe('0');
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(120);
    expect(lines[0]).toMatch(/^swf-fastmon {2}\[connected\] {2}up 5m0\ds {2}\d\d:\d\d:\d\d/);
    expect(lines[1]).toMatch(/^samples 43 {2}data 4\.2 MB/);
    // run, state, STFs, TF samples, bytes
    expect(text).toMatch(/^200002\s+active\s+3\s+15\s+45\.0 kB\s/m);
    expect(text).toMatch(/^200001\s+ended\s+4\s+28\s+4\.2 MB\s/m);
    expect(text).toMatch(/^fastmon-agent-tmux-1\s+running\s+\d+s ago\s+2\s+43\s+STF_HEADER_TRUNCATED×1/m);
    // One sample every 6 s for 258 s: the last 10 minutes show empty buckets, then 1-2 a bucket.
    const spark = lines.find((l) => /^ {2}[▁▂▃▄▅▆▇█]{20,}$/.test(l));
    expect(spark, 'a sparkline row').toBeDefined();
    expect(spark).toMatch(/[▄▅▆▇█]/);
    expect(text).toMatch(/^\s+2-4 KiB [█▏▎▍▌▋▊▉]+\s+15\s+35%$/m);
    expect(text).toMatch(/^\s+128-256 KiB [█▏▎▍▌▋▊▉]+\s+28\s+65%$/m);

    // The clocks move without new messages.
    const header = lines[0];
    await waitFor('the clock to tick', (l) => l[0] !== header, 3_000);

    tmux('resize-window', '-t', SESSION, '-x', '60', '-y', '15');
    const small = await waitFor(
      'the 60×15 frame',
      (l) => l.length <= 15 && l.every((x) => [...x].length <= 60) && l.some((x) => x.startsWith('200001')),
    );
    expect(small.join('\n')).toMatch(/^200001\s+ended\s+4\s+28/m);
    expect(small.join('\n')).toContain('TF RATE');

    tmux('send-keys', '-t', SESSION, 'C-c');
    const after = await waitFor('the summary after Ctrl+C', (l) =>
      l.some((x) => x.includes('swf-fastmon client summary')),
    );
    expect(paneFlag('#{alternate_on}')).toBe('0');
    expect(paneFlag('#{cursor_flag}')).toBe('1');
    expect(after.join('\n')).toMatch(/samples\s+43 TF samples received/);
    // The dashboard's frames were drawn on the alternate screen and left with it.
    expect(after.join('\n')).not.toContain('SAMPLE SIZES');
  });

  it('npm start on a terminal: aligned notification lines, one line per log record, what was new and what existed', async () => {
    if (!tmuxPath)
      throw new Error('tmux is not installed: `apt-get install -y tmux` (CI: test/setup/tools.sh).');
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-start-'));
    const catalog = path.join(dir, 'fastmon.sqlite');
    const cli = path.join(ROOT, 'dist/src/cli.js');
    const command = `cd ${JSON.stringify(ROOT)} && for i in 1 2; do ${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} agent --replay examples/run-100001/messages.jsonl --data-root examples/run-100001 --catalog ${JSON.stringify(catalog)} --http-port -1; done; echo START-DONE; sleep 30`;
    tmux('new-session', '-d', '-s', 'start', '-x', '200', '-y', '50', command);
    const deadline = Date.now() + 30_000;
    let text = '';
    while (Date.now() < deadline) {
      text = tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'start');
      if (text.includes('START-DONE')) break;
      await sleep(200);
    }
    tmux('kill-session', '-t', 'start');
    rmSync(dir, { recursive: true, force: true });
    expect(text).toContain('START-DONE');
    const lines = text.split('\n');
    // Notifications as the client prints them, not JSON.
    const samples = lines.filter((l) =>
      /^\d\d:\d\d:\d\d {2}swf\.100001\.\d{6}_tf_\d{3}\.tf\s+\d+ B\s+STF /.test(l),
    );
    expect(samples).toHaveLength(70);
    expect(text).not.toContain('{"msg_type"');
    // Log records are single lines: "[time] LEVEL: message {fields}".
    const records = lines.filter((l) => /^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR)/.test(l));
    expect(records.length).toBeGreaterThan(10);
    for (const r of records) expect(r).toMatch(/^\[[^\]]+\] \w+: [^{]+( \{.*\})?$/);
    const totals = lines.filter((l) => l.startsWith('  total: '));
    expect(totals).toHaveLength(2);
    expect(totals[0]).toContain('35 TF samples registered (35 new, 0 already there;');
    expect(totals[1]).toContain('35 TF samples registered (0 new, 35 already there;');
  });

  it('is what `swf-fastmon client --dashboard` shows: a local store followed into the per-run table, until q', async () => {
    if (!tmuxPath)
      throw new Error('tmux is not installed: `apt-get install -y tmux` (CI: test/setup/tools.sh).');
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-dash-cli-'));
    const file = path.join(dir, 'fastmon.sqlite');
    const catalog = new CatalogRegistrar(await Store.acquire({ file }), silentLogger(), true);
    for (let i = 1; i <= 12; i++) {
      await catalog.register({
        stfFilename: `swf.300001.00000${1 + (i % 3)}.stf`,
        tfFilename: `swf.300001.00000${1 + (i % 3)}_tf_${String(i).padStart(3, '0')}.tf`,
        tfFirst: i,
        tfLast: i,
        tfCount: 1,
        fileSizeBytes: 5000,
        checksum: null,
        metadata: { run_id: '300001', processed_by: 'fastmon-agent-cli-1' },
      });
    }
    await catalog.close();
    const cli = path.join(ROOT, 'dist/src/cli.js');
    tmux(
      'new-session',
      '-d',
      '-s',
      'cli',
      '-x',
      '120',
      '-y',
      '40',
      // The shell prints the exit code: tmux's own pane_dead_status is not always filled in.
      `${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} client --dashboard --catalog ${JSON.stringify(file)}; echo "client exited $?"; sleep 30`,
    );
    const deadline = Date.now() + 15_000;
    let screen = '';
    while (Date.now() < deadline) {
      screen = tmux('capture-pane', '-p', '-t', 'cli');
      if (/^300001\s+\S+\s+3\s+12\s+60\.0 kB/m.test(screen)) break;
      await sleep(100);
    }
    expect(screen).toMatch(/^300001\s+\S+\s+3\s+12\s+60\.0 kB/m);
    // q quits as Ctrl+C does: the screen is restored, the summary printed, exit 0.
    tmux('send-keys', '-t', 'cli', 'q');
    let after = '';
    const exitAt = Date.now() + 5_000;
    while (Date.now() < exitAt && !/client exited \d+/.test(after)) {
      await sleep(100);
      after = tmux('capture-pane', '-p', '-t', 'cli');
    }
    expect(after).toMatch(/samples\s+12 TF samples received/);
    expect(after).toMatch(/client exited 0/);
    tmux('kill-session', '-t', 'cli');
    rmSync(dir, { recursive: true, force: true });
  });
});
