import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configMarkdown } from '../../src/cli/help.js';
import { Ledger } from '../../src/inputs/ledger.js';
import { silentLogger } from '../../src/log/logger.js';
import { CatalogRegistrar } from '../../src/sinks/catalog.js';
import { Outbox } from '../../src/sinks/outbox.js';
import { Store } from '../../src/store/store.js';
import { brokerAddress, TestPeer } from '../support/broker.js';
import { ROOT, startCli } from '../support/cli.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<Run> {
  const started = startCli(args, env, cwd);
  const code = await started.exited;
  return { code, ...started.out };
}

describe('swf-fastmon command line', () => {
  it('lists its subcommands', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    for (const name of ['agent', 'scan', 'watch', 'gen', 'client', 'catalog'])
      expect(stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it('prints the resolved configuration with secrets redacted', async () => {
    const { code, stdout } = await run(['agent', '--print-config', '--tf-files-per-stf', '5'], {
      ACTIVEMQ_PASSWORD: 'brokersecret99',
      SWF_API_TOKEN: 'tokensecret0123456789',
      SWF_MONITOR_URL: 'https://user:urlpass77@monitor.example/swf-monitor',
    });
    expect(code).toBe(0);
    const printed = JSON.parse(stdout);
    expect(printed.sampling.tf_files_per_stf).toBe(5);
    expect(printed.broker.password).toBe('[redacted]');
    expect(stdout).not.toMatch(/brokersecret99|tokensecret0123456789|urlpass77/);
  });

  it('refuses a bad FASTMON_MODE with exit code 2, naming the key and value', async () => {
    const { code, stderr } = await run(['agent'], { FASTMON_MODE: 'true' });
    expect(code).toBe(2);
    expect(stderr).toContain(
      'agent.mode (env FASTMON_MODE): expected one of message, continuous, got "true"',
    );
  });

  it('runs the embedded default: replays the example run into a catalog and prints notifications and a summary', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-cli-'));
    const catalog = path.join(dir, 'fastmon.sqlite');
    const rowCount = () => {
      const db = new Database(catalog, { readonly: true });
      try {
        return db.prepare('SELECT count(*) FROM fastmon_files').pluck().get();
      } finally {
        db.close();
      }
    };
    const args = [
      'agent',
      '--replay',
      'examples/run-100001/messages.jsonl',
      '--data-root',
      'examples/run-100001',
    ];
    const { code, stdout, stderr } = await run([...args, '--catalog', catalog, '--http-port', '-1']);
    expect(code, stderr).toBe(0);
    const notes = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    // Six STFs announced, one of them during pause_run: 5 × 7 samples.
    expect(notes.filter((n) => n.msg_type === 'tf_file_registered')).toHaveLength(35);
    expect(notes.find((n) => n.msg_type === 'fastmon_status')).toMatchObject({
      stfs_sampled: 5,
      stfs_skipped: 1,
    });
    expect(stdout).toMatch(
      /run 100001 \(ended\): 6 STFs received, 5 sampled, 1 skipped, 0 failed; 35 TF samples registered/,
    );
    expect(rowCount()).toBe(35);
    // Replaying again registers nothing new: the catalog keeps tf_filename unique like swf-monitor.
    const again = await run([...args, '--catalog', catalog, '--http-port', '-1']);
    expect(again.code).toBe(0);
    expect(rowCount()).toBe(35);
    // ... and says so: the first run's samples were new, the second's were all there already.
    expect(stdout).toMatch(/35 TF samples registered \(35 new, 0 already there; /);
    expect(again.stdout).toMatch(/35 TF samples registered \(0 new, 35 already there; /);
    // The example STFs are binary (written by gen): samples have real sizes (JSON STFs gave 4 bytes).
    const samples = notes.filter((n) => n.msg_type === 'tf_file_registered');
    for (const n of samples) expect(n.file_size_bytes as number).toBeGreaterThan(400);
  });
});

describe('swf-fastmon catalog', () => {
  it('shows rows per run, the newest samples, what the outbox holds and the ledger; a missing store is one line', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-cli-catalog-'));
    const file = path.join(dir, 'fastmon.sqlite');
    const store = await Store.acquire({ file });
    const catalog = new CatalogRegistrar(store, silentLogger());
    for (const n of [1, 2, 3]) {
      await catalog.register({
        stfFilename: 'swf.104001.000001.stf',
        tfFilename: `swf.104001.000001_tf_00${n}.tf`,
        tfFirst: n,
        tfLast: n + 1,
        tfCount: 2,
        fileSizeBytes: 100,
        checksum: null,
        metadata: { run_id: '104001' },
      });
    }
    const outbox = await Outbox.open(store, { maxBytes: 1 << 20 });
    await outbox.append({
      record: { tfFilename: 'swf.104002.000001_tf_001.tf' },
      runId: '104002',
      executionId: null,
    });
    await new Ledger(store).record('/data/swf.104001.000001.stf', {
      size: 1,
      mtimeMs: 2,
      outcome: 'sampled',
    });
    await store.release();

    const shown = await run(['catalog', '--catalog', file, '--last', '2']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^ {2}104001 +1 +3 +300 /m);
    expect(shown.stdout).toContain('last 2 samples:');
    expect(shown.stdout).toContain('swf.104001.000001_tf_003.tf');
    expect(shown.stdout).not.toContain('swf.104001.000001_tf_001.tf');
    expect(shown.stdout).toMatch(/outbox: 1 entries waiting for swf-monitor/);
    expect(shown.stdout).toMatch(/^ {2}1 +\S+ +swf\.104002\.000001_tf_001\.tf$/m);
    expect(shown.stdout).toContain('ledger: 1 sampled');

    const missing = await run(['catalog', '--catalog', path.join(dir, 'nope.sqlite')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toEqual([
      `swf-fastmon: CONFIG_INVALID: no local store at ${path.join(dir, 'nope.sqlite')} (agent.catalog, --catalog)`,
    ]);
  });
});

describe('swf-fastmon agent configured only through the testbed environment', () => {
  let double: MonitorDouble;
  let child: ChildProcess | null = null;

  beforeAll(async () => {
    double = await startMonitorDouble();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await double.close();
  });

  it('registers 7 samples per stf_ready, broadcasts them on /topic/epictopic, nothing new on a repeat, and exits 0 on SIGTERM', async () => {
    const { host, port } = brokerAddress();
    const namespace = `cli-${randomUUID().slice(0, 8)}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'fastmon-tb-'));
    const testbed = path.join(dir, 'testbed.toml');
    writeFileSync(testbed, `[testbed]\nnamespace = "${namespace}"\n`);
    double.addStfFile({ stf_filename: 'swf.102000.000001.stf', run_number: 102000 });
    const peer = await TestPeer.connect();
    const seen = await peer.collect('/topic/epictopic');

    const env = {
      ACTIVEMQ_HOST: host,
      ACTIVEMQ_PORT: String(port),
      ACTIVEMQ_USER: 'admin',
      ACTIVEMQ_PASSWORD: 'admin',
      SWF_MONITOR_URL: double.url,
      SWF_API_TOKEN: double.token,
      SWF_TESTBED_CONFIG: testbed,
      SWF_LOG_LEVEL: 'INFO',
      FASTMON_HTTP_PORT: '0',
      // Agent names repeat across monitor doubles: a client-id no other test file's agent has.
      FASTMON_CLIENT_ID: `fastmon-cli-${randomUUID()}`,
    };
    const started = startCli(['agent'], env, dir);
    child = started.proc;
    const { out, exited } = started;
    await waitUntil(
      () => out.stderr.includes('"msg":"subscribed"') && double.heartbeats.length > 0,
      () => out.stderr,
    );

    const stfReady = {
      msg_type: 'stf_ready',
      namespace,
      filename: 'swf.102000.000001.stf',
      run_id: '102000',
      file_url: null,
      checksum: null,
      size_bytes: null,
      state: 'run',
      substate: 'physics',
    };
    // SUBSCRIBE is asynchronous on the broker: repeat the first message until it is taken.
    // Repeats are exactly what must register nothing new.
    const tfNotes = () => seen.bodies('tf_file_registered').filter((b) => b.namespace === namespace);
    const deadline = Date.now() + 15_000;
    while (tfNotes().length === 0 && Date.now() < deadline) {
      await peer.publish('/topic/epictopic', stfReady);
      await new Promise((r) => setTimeout(r, 300));
    }
    await seen.waitFor(() => tfNotes().length >= 7, 15_000, '7 notifications');
    expect(double.fastmonFiles).toHaveLength(7);
    expect(new Set(tfNotes().map((n) => n.tf_filename)).size).toBe(7);

    await peer.publish('/topic/epictopic', stfReady);
    await waitUntil(
      () => (out.stderr.match(/already handled/g) ?? []).length >= 1,
      () => out.stderr,
    );
    expect(double.fastmonFiles).toHaveLength(7);
    expect(tfNotes()).toHaveLength(7);

    started.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    child = null;
    expect(double.heartbeats.at(-1)?.body).toMatchObject({
      status: 'EXITED',
      agent_type: 'fastmon',
      namespace,
    });
    expect(out.stdout).toMatch(/run 102000 \(no run messages seen\): \d+ STFs received, 1 sampled/);
    expect(out.stderr).not.toContain(double.token);
    await peer.close();
  });
});

describe('supervisord stop signal', () => {
  it('exits 0 on SIGQUIT after the EXITED heartbeat', async () => {
    const double = await startMonitorDouble();
    const { host, port } = brokerAddress();
    const env = {
      ACTIVEMQ_HOST: host,
      ACTIVEMQ_PORT: String(port),
      SWF_MONITOR_URL: double.url,
      SWF_API_TOKEN: double.token,
      FASTMON_SUBSCRIPTION: `/topic/fastmon.test.quit.${randomUUID().slice(0, 8)}`,
      FASTMON_HTTP_PORT: '-1',
      FASTMON_CATALOG: path.join(mkdtempSync(path.join(tmpdir(), 'fastmon-cli-')), 'fastmon.sqlite'),
      FASTMON_CLIENT_ID: `fastmon-cli-${randomUUID()}`,
    };
    const { proc, out, exited } = startCli(['agent'], env);
    try {
      await waitUntil(
        () => double.heartbeats.length > 0,
        () => out.stderr,
      );
      proc.kill('SIGQUIT');
      expect(await exited).toBe(0);
      expect(double.heartbeats.at(-1)?.body).toMatchObject({ status: 'EXITED' });
      expect(out.stderr).toContain('received SIGQUIT');
    } finally {
      proc.kill('SIGKILL');
      await double.close();
    }
  });
});

describe('start-up without swf-monitor', () => {
  it('keeps asking for an agent id while the monitor is down, and still stops cleanly on SIGTERM', async () => {
    const double = await startMonitorDouble();
    double.fail({ path: '/state/next-agent-id/', status: 503 });
    const env = {
      ACTIVEMQ_HOST: brokerAddress().host,
      ACTIVEMQ_PORT: String(brokerAddress().port),
      SWF_MONITOR_URL: double.url,
      SWF_API_TOKEN: double.token,
      FASTMON_MONITOR_RETRIES: '0',
      FASTMON_MONITOR_RETRY_DELAY_MS: '20',
      FASTMON_HTTP_PORT: '-1',
      FASTMON_CATALOG: path.join(mkdtempSync(path.join(tmpdir(), 'fastmon-cli-')), 'fastmon.sqlite'),
      FASTMON_CLIENT_ID: `fastmon-cli-${randomUUID()}`,
    };
    const { proc, out, exited } = startCli(['agent'], env);
    try {
      await waitUntil(
        () => (out.stderr.match(/cannot get an agent id from swf-monitor/g) ?? []).length >= 2,
        () => out.stderr,
      );
      expect(out.stderr).toMatch(/HTTP 503/);
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      proc.kill('SIGKILL');
      await double.close();
    }
  });
});

describe('the documentation', () => {
  it('docs/configuration.md carries the configuration table generated from the key table', () => {
    const page = readFileSync(path.join(ROOT, 'docs/configuration.md'), 'utf8');
    expect(page).toContain(configMarkdown());
  });

  it('links only to files that exist, and never outside the repository', () => {
    for (const file of ['README.md', ...readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`)]) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      expect(text, file).not.toMatch(/\.\.\/shared|\/work\/shared|swf-ecosystem\.md/);
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target as string)) continue;
        expect(
          existsSync(path.join(ROOT, path.dirname(file), target as string)),
          `${file} -> ${target}`,
        ).toBe(true);
      }
    }
  });
});

async function waitUntil(predicate: () => boolean, context: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out; output so far:\n${context().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
