import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/logger.js';
import { CatalogRegistrar } from '../../src/sinks/catalog.js';
import { Store } from '../../src/store/store.js';
import { brokerAddress, TestPeer, uniqueTopic } from '../support/broker.js';
import { CLI, startCli } from '../support/cli.js';
import { startSseServer } from '../support/sse-server.js';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function start(args: string[], env: Record<string, string> = {}) {
  const started = startCli(['client', ...args], env);
  children.push(started.proc);
  return started;
}

async function until(predicate: () => boolean, what: string, context: () => string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function sample(run: string, stf: number, i: number, size: number | null) {
  return {
    msg_type: 'tf_file_registered',
    processed_by: 'fastmon-agent-test-1',
    run_id: run,
    stf_filename: `swf.${run}.${String(stf).padStart(6, '0')}.stf`,
    tf_file_id: `id-${stf}-${i}`,
    tf_filename: `swf.${run}.${String(stf).padStart(6, '0')}_tf_${String(i).padStart(3, '0')}.tf`,
    tf_first: i * 100,
    tf_last: i * 100 + 19,
    tf_count: 20,
    file_size_bytes: size,
    status: 'registered',
    timestamp: '2026-11-23T14:30:25.123000',
  };
}

describe('swf-fastmon client', () => {
  it('shows one line per TF sample from the broker and a correct summary on Ctrl+C', async () => {
    const { host, port } = brokerAddress();
    const topic = uniqueTopic('client');
    const c = start(['--host', host, '--port', String(port), '--queue', topic]);
    const peer = await TestPeer.connect();
    // The subscription is asynchronous: publish probes (filtered out) until the client is listening.
    const probe = {
      msg_type: 'tf_file_registered',
      run_id: 'probe',
      tf_filename: 'probe.tf',
      file_size_bytes: 1,
    };
    const deadline = Date.now() + 15_000;
    while (!c.out.stdout.includes('probe.tf') && Date.now() < deadline) {
      await peer.publish(topic, probe);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (let i = 1; i <= 7; i++) await peer.publish(topic, sample('111000', 1, i, 3_000_000));
    for (let i = 1; i <= 3; i++) await peer.publish(topic, sample('111001', 1, i, 1_000_000));
    await peer.publish(topic, { msg_type: 'stf_ready', run_id: '111000', filename: 'x.stf' }); // not shown
    await peer.publish(topic, 'not json at all');
    await peer.publish(topic, { msg_type: 'tf_file_registered', run_id: '111001' }); // fields missing
    // Four lines for run 111001: three samples and the one with fields missing, which is shown with '-'.
    // Waiting for only the three let Ctrl+C overtake the last message (a CI failure).
    await until(
      () => (c.out.stdout.match(/^\d\d:\d\d:\d\d .* run 111001 /gm) ?? []).length >= 4,
      'the lines',
      () => c.out.stdout,
    );
    c.proc.kill('SIGINT');
    expect(await c.exited).toBe(0);
    await peer.close();
    const lines = c.out.stdout.split('\n');
    const tfLines = lines.filter((l) => /_tf_\d{3}\.tf/.test(l));
    expect(tfLines).toHaveLength(10);
    expect(tfLines[0]).toMatch(
      /swf\.111000\.000001_tf_001\.tf\s+3\.0 MB\s+STF swf\.111000\.000001\.stf\s+run 111000\s+TFs 100-119 \(20\)\s+registered/,
    );
    expect(c.out.stdout).not.toContain('\u001b['); // not a terminal: no colour
    expect(c.out.stdout).not.toContain('x.stf');
    expect(c.out.stdout).toMatch(/swf-fastmon client summary/);
    expect(c.out.stdout).toMatch(/data volume\s+24\.0 MB/); // 7 × 3 MB + 3 × 1 MB (+ probes of 1 byte)
    expect(c.out.stdout).toMatch(/^\s+111000\s+\S+\s+7\s+1\s+21\.0 MB/m);
    expect(c.out.stdout).toMatch(/^\s+111001\s+\S+\s+4\s+1\s+3\.0 MB/m);
  });

  it('filters by run and writes JSON lines with --json', async () => {
    const { host, port } = brokerAddress();
    const topic = uniqueTopic('client-json');
    const c = start(['--host', host, '-p', String(port), '-q', topic, '--json', '--run', '111002']);
    const peer = await TestPeer.connect();
    const deadline = Date.now() + 15_000;
    let n = 0;
    while (!c.out.stdout.includes('"run_id":"111002"') && Date.now() < deadline) {
      await peer.publish(topic, sample('111002', 9, ++n % 999, 10));
      await peer.publish(topic, sample('111003', 9, n % 999, 10));
      await new Promise((r) => setTimeout(r, 200));
    }
    c.proc.kill('SIGTERM');
    expect(await c.exited).toBe(0);
    await peer.close();
    // stdout carries JSON only, to the end: the summary is the last JSON line.
    const json = c.out.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = json.pop();
    expect(json.length).toBeGreaterThan(0);
    expect(json.every((m) => m.run_id === '111002')).toBe(true);
    expect(summary).toMatchObject({ msg_type: 'fastmon_client_summary', tf_samples: json.length });
  });

  it("pipes into jq to the end with --json (the README's `client … --json | jq .`)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-client-jq-'));
    // A catalog in the old JSON-lines format is replayed once and ends (a local store is followed until Ctrl+C).
    const file = path.join(dir, 'catalog.jsonl');
    const rows = [1, 2, 3].map((i) =>
      JSON.stringify({
        kind: 'fastmon_file',
        tf_file_id: `00000000-0000-4000-8000-00000000000${i}`,
        stf_file: 'swf.111006.000001.stf',
        tf_filename: `swf.111006.000001_tf_00${i}.tf`,
        file_size_bytes: 1000,
        checksum: null,
        status: 'registered',
        metadata: { run_id: '111006' },
        tf_first: i,
        tf_last: i,
        tf_count: 1,
        created_at: '2026-07-01T12:00:00.000Z',
      }),
    );
    writeFileSync(file, `${rows.join('\n')}\n`);
    const shell = spawn(
      'bash',
      [
        '-c',
        `"${process.execPath}" "${CLI}" client --catalog "${file}" --json | jq -c .; exit "\${PIPESTATUS[1]}"`,
      ],
      { env: { PATH: process.env.PATH ?? '' } },
    );
    let out = '';
    shell.stdout.on('data', (d) => {
      out += d;
    });
    const code = await new Promise<number | null>((resolve) => shell.on('close', resolve));
    expect(code).toBe(0); // jq fails (exit 5) on the first line that is not JSON
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[3] as string)).toMatchObject({
      msg_type: 'fastmon_client_summary',
      tf_samples: 3,
      bytes: 3000,
      runs: [{ run_id: '111006', tf_samples: 3 }],
    });
  });

  it('follows a local store: the rows there, then rows committed while it runs; Ctrl+C prints the summary', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-client-'));
    const file = path.join(dir, 'fastmon.sqlite');
    const store = await Store.acquire({ file });
    const catalog = new CatalogRegistrar(store, silentLogger(), true);
    const register = (i: number) =>
      catalog.register({
        stfFilename: 'swf.111004.000001.stf',
        tfFilename: `swf.111004.000001_tf_00${i}.tf`,
        tfFirst: i,
        tfLast: i,
        tfCount: 1,
        fileSizeBytes: 1000,
        checksum: null,
        metadata: { run_id: '111004' },
      });
    try {
      for (let i = 1; i <= 5; i++) await register(i);
      const c = start(['--catalog', file]);
      const lines = () => c.out.stdout.split('\n').filter((l) => /_tf_00\d\.tf/.test(l));
      await until(
        () => lines().length === 5,
        'the rows already there',
        () => c.out.stdout + c.out.stderr,
      );
      for (let i = 6; i <= 8; i++) await register(i);
      await until(
        () => lines().length === 8,
        'the rows committed later',
        () => c.out.stdout + c.out.stderr,
      );
      c.proc.kill('SIGINT');
      expect(await c.exited).toBe(0);
      expect(c.out.stdout).toMatch(/8 TF samples received/);
      expect(c.out.stdout).toMatch(/^\s+111004\s+\S+\s+8\s+1\s+8\.0 kB/m);
    } finally {
      await catalog.close();
    }
  });

  it("reads swf-monitor's SSE relay with --sse", async () => {
    const server = await startSseServer({ basePath: '/swf-monitor' });
    try {
      const c = start(['--sse'], { SWF_MONITOR_URL: server.url, SWF_API_TOKEN: server.token });
      await until(
        () => server.open > 0,
        'the SSE connection',
        () => c.out.stderr,
      );
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 1; i <= 4; i++) server.push(sample('111005', 2, i, 2_000));
      server.heartbeat();
      await until(
        () => (c.out.stdout.match(/run 111005/g) ?? []).length === 4,
        'the SSE lines',
        () => c.out.stdout + c.out.stderr,
      );
      c.proc.kill('SIGINT');
      expect(await c.exited).toBe(0);
      expect(c.out.stdout).toMatch(/4 TF samples received/);
      expect(server.requests[0]?.query).toMatch(
        /msg_types=tf_file_registered%2Cfastmon_summary%2Cfastmon_status|msg_types=tf_file_registered,fastmon_summary,fastmon_status/,
      );
      expect(c.out.stdout + c.out.stderr).not.toContain(server.token);
    } finally {
      await server.close();
    }
  });
});
