import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { genCommand } from '../../src/cli/gen-command.js';
import { adler32 } from '../../workers/stf-format.js';
import { readStf } from '../../workers/stf-reader.js';
import { brokerAddress, type Collector, TestPeer, uniqueTopic } from '../support/broker.js';
import { type MonitorDouble, startMonitorDouble } from '../support/monitor-double.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/src/cli.js');
const LOCAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/;

let monitor: MonitorDouble;
let peer: TestPeer;
const made: string[] = [];

beforeAll(async () => {
  monitor = await startMonitorDouble({ basePath: '/swf-monitor' });
  peer = await TestPeer.connect();
});

afterAll(async () => {
  await peer?.close();
  await monitor?.close();
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fastmon-gen-publish-'));
  made.push(d);
  return d;
}

/** `gen --publish` in-process, against the test broker and the monitor double. */
async function publishRun(out: string, run: number, topic: string, extra: string[] = []): Promise<string> {
  const { host, port } = brokerAddress();
  let stdout = '';
  const code = await genCommand(
    [
      ...['--out', out, '--run', String(run), '--count', '3', '--tfs-per-stf', '40', '--tf-size', '3000'],
      ...['--publish', '--destination', topic, '--namespace', 'gen-test', '--log-level', 'warn'],
      ...['--broker-host', host, '--broker-port', String(port), '--broker-heartbeat-ms', '0'],
      ...['--monitor-url', monitor.url, '--monitor-token', monitor.token],
      ...extra,
    ],
    { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: () => true, isTTY: false } },
  );
  expect(code).toBe(0);
  return stdout;
}

async function collected(topic: string, count: number, run: () => Promise<unknown>): Promise<Collector> {
  const collector = await peer.collect(topic);
  await run();
  await collector.waitFor(
    (c) => c.bodies('end_run').length > 0 && c.messages.length >= count,
    15_000,
    'end_run',
  );
  return collector;
}

/** Checks every stf_ready field against the file it announces. */
async function expectStfReady(body: Record<string, unknown>, out: string, run: number, sequence: number) {
  const filename = `swf.${run}.${String(sequence).padStart(6, '0')}.stf`;
  const file = path.join(out, filename);
  const bytes = readFileSync(file);
  const { header } = await readStf(file);
  expect(body.msg_type).toBe('stf_ready');
  expect(body.run_id).toBe(String(run));
  expect(body.filename).toBe(filename);
  expect(body.file_url).toBe(pathToFileURL(file).href);
  expect(body.size_bytes).toBe(bytes.length);
  expect(body.checksum).toBe(`ad:${adler32(bytes)}`);
  expect(body.state).toBe('run');
  expect(body.substate).toBe('physics');
  expect(body.sequence).toBe(sequence);
  expect(body.tf_count).toBe(header.tfCount);
  expect(body.start).toBe(header.start);
  expect(body.end).toBe(header.end);
  expect(body.timestamp).toMatch(LOCAL_ISO);
}

describe('swf-fastmon gen --publish', () => {
  it('registers the Run and its StfFiles, then publishes run_imminent, start_run, stf_ready per file and end_run', async () => {
    const out = dir();
    const topic = uniqueTopic('gen');
    monitor.addRun({ run_number: 100301 }); // GET /api/runs/ returns every run: the right one must be picked
    let stdout = '';
    const collector = await collected(topic, 6, async () => {
      stdout = await publishRun(out, 100310, topic);
    });

    const bodies = collector.bodies();
    expect(bodies.map((b) => b.msg_type)).toEqual([
      'run_imminent',
      'start_run',
      'stf_ready',
      'stf_ready',
      'stf_ready',
      'end_run',
    ]);
    const [imminent, start, ...rest] = bodies;
    const end = rest.pop();
    expect(imminent).toMatchObject({ run_id: '100310', state: 'beam', substate: 'not_ready' });
    expect(start).toMatchObject({ run_id: '100310', state: 'run', substate: 'physics' });
    expect(end).toMatchObject({ run_id: '100310', total_stf_files: 3 });
    for (const [i, body] of rest.entries()) await expectStfReady(body, out, 100310, i + 1);
    for (const body of bodies) {
      expect(body.namespace).toBe('gen-test');
      expect(body.sender).toMatch(/^fastmon-gen-.+-\d+$/);
      expect(body.execution_id).toBe(imminent?.execution_id);
      expect('agent_name' in body && 'status' in body).toBe(false);
    }

    const run = monitor.runs.find((r) => r.run_number === 100310);
    expect(run).toBeDefined();
    expect(run?.end_time).not.toBeNull();
    const rows = monitor.stfFiles.filter((r) => r.run === run?.run_id);
    expect(rows.map((r) => r.stf_filename)).toEqual(readdirSync(out).sort());
    for (const row of rows) {
      const bytes = readFileSync(path.join(out, row.stf_filename));
      expect(row).toMatchObject({
        file_size_bytes: bytes.length,
        checksum: `ad:${adler32(bytes)}`,
        status: 'registered',
        machine_state: 'run',
        tf_count: 40,
        metadata: { created_by: 'swf-fastmon gen', substate: 'physics' },
      });
    }
    expect(stdout).toMatch(/swf-monitor: execution created, run created, 3 StfFiles new, 0 already there/);
  });

  it("creates the WorkflowExecution as the testbed's runner does, so the monitor's listener takes every lifecycle message", async () => {
    const topic = uniqueTopic('gen-execution');
    const collector = await collected(topic, 6, () => publishRun(dir(), 100315, topic));
    const lifecycle = collector.bodies().filter((b) => b.msg_type !== 'stf_ready');
    expect(lifecycle).toHaveLength(3);
    expect(lifecycle.map((b) => monitor.listenerError(b))).toEqual([null, null, null]);
    const execution = monitor.workflowExecutions.find((e) => e.execution_id === lifecycle[0]?.execution_id);
    expect(execution).toMatchObject({
      status: 'completed',
      namespace: 'gen-test',
      parameter_values: expect.objectContaining({ run: 100315 }),
    });
    expect(execution?.end_time).not.toBeNull();
    const definition = monitor.workflowDefinitions.find((d) => d.id === execution?.workflow_definition);
    expect(definition).toMatchObject({ workflow_name: 'swf_fastmon_gen', workflow_type: 'simulation' });
    // The execution exists before the first message: its POST precedes the Run's.
    const writes = monitor.requests.filter((r) => r.method === 'POST').map((r) => r.path);
    const executionPost = writes.indexOf('/swf-monitor/api/workflow-executions/');
    expect(executionPost).toBeGreaterThanOrEqual(0);
    expect(executionPost).toBeLessThan(writes.lastIndexOf('/swf-monitor/api/stf-files/'));
  });

  it('run again, registers nothing new and does not fail', async () => {
    const out = dir();
    await publishRun(out, 100320, uniqueTopic('gen-first'));
    const runs = monitor.runs.length;
    const files = monitor.stfFiles.length;
    const topic = uniqueTopic('gen-again');
    const { host, port } = brokerAddress();
    let again = { code: null as number | null, stdout: '', stderr: '' };
    // The second run is the built command line, so its log lines can be read: no warning either.
    const collector = await collected(topic, 6, async () => {
      again = await spawnGen(
        [
          ...[
            'gen',
            '--out',
            out,
            '--run',
            '100320',
            '--count',
            '3',
            '--tfs-per-stf',
            '40',
            '--tf-size',
            '3000',
          ],
          ...['--publish', '--destination', topic],
        ],
        {
          ACTIVEMQ_HOST: host,
          ACTIVEMQ_PORT: String(port),
          SWF_MONITOR_URL: monitor.url,
          SWF_API_TOKEN: monitor.token,
        },
      );
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/"level":"(warn|error)"/);
    const stdout = again.stdout;
    expect(monitor.runs.length).toBe(runs);
    expect(monitor.stfFiles.length).toBe(files);
    expect(stdout).toMatch(/swf-monitor: execution existed, run existed, 0 StfFiles new, 3 already there/);
    // The same bytes again, so the registered checksums still describe the files.
    for (const [i, body] of collector.bodies('stf_ready').entries())
      await expectStfReady(body, out, 100320, i + 1);
  });

  it('paced with --rate, from the built command line and without swf-monitor, still completes in order', async () => {
    const out = dir();
    const topic = uniqueTopic('gen-rate');
    const { host, port } = brokerAddress();
    const collector = await peer.collect(topic);
    const runs = monitor.runs.length;
    const args = ['gen', '--out', out, '--run', '100330', '--count', '4', '--tfs-per-stf', '20'];
    // The broker comes from the environment, as the testbed configures its agents (ACTIVEMQ_*).
    const { code, stdout, stderr } = await spawnGen(
      [...args, '--publish', '--rate', '20', '--destination', topic],
      {
        ACTIVEMQ_HOST: host,
        ACTIVEMQ_PORT: String(port),
        SWF_LOG_LEVEL: 'warning',
      },
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^swf-fastmon gen: run 100330, 4 STFs, .*published 4 stf_ready/);
    await collector.waitFor((c) => c.bodies('end_run').length > 0, 15_000, 'end_run');
    expect(collector.bodies().map((b) => b.msg_type)).toEqual([
      'run_imminent',
      'start_run',
      'stf_ready',
      'stf_ready',
      'stf_ready',
      'stf_ready',
      'end_run',
    ]);
    for (const [i, body] of collector.bodies('stf_ready').entries())
      await expectStfReady(body, out, 100330, i + 1);
    expect(monitor.runs.length).toBe(runs); // no SWF_MONITOR_URL: messages only
  });

  it('warns, and leaves the rows alone, when a rerun with another seed writes other bytes under registered names', async () => {
    const out = dir();
    await publishRun(out, 100340, uniqueTopic('gen-seed'));
    const before = monitor.stfFiles
      .filter((r) => r.stf_filename.startsWith('swf.100340.'))
      .map((r) => ({ ...r }));
    const { host, port } = brokerAddress();
    const args = [
      'gen',
      '--out',
      out,
      '--run',
      '100340',
      '--count',
      '3',
      '--tfs-per-stf',
      '40',
      '--tf-size',
      '3000',
    ];
    const { code, stderr } = await spawnGen(
      [...args, '--seed', 'another', '--publish', '--destination', uniqueTopic('x')],
      {
        ACTIVEMQ_HOST: host,
        ACTIVEMQ_PORT: String(port),
        SWF_MONITOR_URL: monitor.url,
        SWF_API_TOKEN: monitor.token,
      },
    );
    expect(code, stderr).toBe(0);
    const warnings = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r.msg === 'StfFile row already registered with other values; left as it is');
    expect(warnings.map((w) => w.stf)).toEqual(before.map((r) => r.stf_filename));
    expect(monitor.stfFiles.filter((r) => r.stf_filename.startsWith('swf.100340.'))).toEqual(before);
  });
});

/** The built command line, with exactly the given environment (plus PATH). */
async function spawnGen(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => {
    stdout += d;
  });
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  return { code, stdout, stderr };
}
