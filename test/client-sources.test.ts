import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type ClientMessage, catalogSource, type Source, sseSource } from '../src/client/sources/index.js';
import { SseParser } from '../src/client/sources/sse-parser.js';
import { isFastmonError } from '../src/errors.js';
import { silentLogger } from '../src/log/logger.js';
import { CatalogRegistrar } from '../src/sinks/catalog.js';
import { Store } from '../src/store/store.js';
import { captureLogs } from './support/logs.js';
import { rememberSecret } from './support/secrets.js';
import { type SseServer, startSseServer } from './support/sse-server.js';

async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const registered = (n: number, extra: Record<string, unknown> = {}) => ({
  msg_type: 'tf_file_registered',
  run_id: '100001',
  processed_by: 'fastmon-agent-test-1',
  tf_filename: `swf.100001.000001.tf.${n}`,
  ...extra,
});

describe('SSE source', () => {
  let server: SseServer;
  const sources: Source[] = [];

  beforeEach(async () => {
    server = await startSseServer();
    rememberSecret(server.token);
  });

  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.close()));
    await server.close();
  });

  function open(extra: Partial<Parameters<typeof sseSource>[0]> = {}) {
    const logs = captureLogs();
    const received: ClientMessage[] = [];
    const source = sseSource({
      url: server.url,
      token: server.token,
      msgTypes: [],
      logger: logs.logger,
      retryMs: 50,
      ...extra,
    });
    sources.push(source);
    return { source, received, logs, onMessage: (m: ClientMessage) => received.push(m) };
  }

  it('delivers pushed messages in order and keeps connected and heartbeat events to itself', async () => {
    const { source, received, onMessage } = open();
    expect(source.status()).toBe('disconnected');
    await source.start(onMessage);
    expect(source.status()).toBe('connected');
    expect(source.describe()).toBe(`sse ${server.url}/api/messages/stream/`);
    server.push(registered(1));
    server.heartbeat();
    server.push({ msg_type: 'fastmon_summary', run_id: '100001', tfs_registered: 7 });
    server.push(registered(2));
    await waitUntil(() => received.length === 3, 'three messages');
    expect(received.map((m) => m.msg_type)).toEqual([
      'tf_file_registered',
      'fastmon_summary',
      'tf_file_registered',
    ]);
    expect(received[0]).toEqual(registered(1));
    expect(received[2]?.tf_filename).toBe('swf.100001.000001.tf.2');
  });

  it('sends msg_types, run_ids and agents in the query, and gets only what the relay lets through', async () => {
    const { source, received, onMessage } = open({
      msgTypes: ['tf_file_registered', 'fastmon_status'],
      runIds: ['100001'],
      agents: ['fastmon-agent-test-1'],
    });
    await source.start(onMessage);
    const query = new URLSearchParams(server.requests[0]?.query);
    expect(query.get('msg_types')).toBe('tf_file_registered,fastmon_status');
    expect(query.get('run_ids')).toBe('100001');
    expect(query.get('agents')).toBe('fastmon-agent-test-1');
    expect(source.describe()).toContain('msg_types=tf_file_registered,fastmon_status');
    server.push({ msg_type: 'stf_ready', run_id: '100001', processed_by: 'fastmon-agent-test-1' });
    server.push(registered(1, { processed_by: 'someone-else' }));
    server.push(registered(2, { run_id: 100001 })); // an integer run_id never matches (docs/testbed-interface.md, "The SSE relay")
    server.push(registered(3));
    server.push({ msg_type: 'fastmon_status', run_id: '100001', processed_by: 'fastmon-agent-test-1' });
    await waitUntil(() => received.length === 2, 'two messages');
    expect(received.map((m) => m.tf_filename ?? m.msg_type)).toEqual([
      'swf.100001.000001.tf.3',
      'fastmon_status',
    ]);
  });

  it('reconnects after the monitor drops every stream and goes on delivering', async () => {
    const { source, received, onMessage, logs } = open();
    await source.start(onMessage);
    server.push(registered(1));
    await waitUntil(() => received.length === 1, 'the first message');
    server.dropAll();
    await waitUntil(() => server.connections === 2 && source.status() === 'connected', 'a second stream');
    server.push(registered(2));
    await waitUntil(() => received.length === 2, 'the message after the reconnect');
    expect(received.map((m) => m.tf_filename)).toEqual(['swf.100001.000001.tf.1', 'swf.100001.000001.tf.2']);
    expect(logs.find((r) => String(r.msg).includes('reconnecting'))).toBeDefined();
  });

  it('rides out a 503 window with a log that names the missing channel layer', async () => {
    const { source, received, onMessage, logs } = open();
    await source.start(onMessage);
    server.unavailable(true);
    server.dropAll();
    await waitUntil(() => server.requests.filter((r) => r.status === 503).length >= 2, 'two 503 answers');
    expect(source.status()).not.toBe('connected');
    expect(source.describe()).toContain('(reconnecting)');
    const error = logs.find(
      (r) => r.level === 'error' && (r.err as { details?: { status?: number } })?.details?.status === 503,
    );
    expect(error?.msg).toMatch(/HTTP 503.*channel layer/);
    server.unavailable(false);
    await waitUntil(() => source.status() === 'connected', 'the stream back');
    server.push(registered(1));
    await waitUntil(() => received.length === 1, 'a message after the window');
    expect(source.describe()).not.toContain('reconnecting');
  });

  it('logs a clear error on 401 that names the token setting and never the token', async () => {
    const wrong = 'b'.repeat(8) + server.token.slice(8);
    rememberSecret(wrong);
    const { source, received, onMessage, logs } = open({ token: wrong });
    const started = source.start(onMessage);
    await waitUntil(() => server.requests.filter((r) => r.status === 401).length >= 2, 'a retried 401');
    const error = logs.find((r) => r.level === 'error');
    expect(error?.msg).toMatch(/HTTP 401.*SWF_API_TOKEN/);
    expect((error?.err as { code?: string } | undefined)?.code).toBe('SSE_UNAVAILABLE');
    expect(logs.text()).not.toContain(wrong);
    expect(logs.text()).not.toContain(server.token);
    expect(source.status()).not.toBe('connected');
    expect(received).toEqual([]);
    await source.close();
    await started; // close() releases a start() that never connected
  });

  it('skips garbage data lines, comments and id/retry fields, and names untyped bodies after their event', async () => {
    const { source, received, onMessage } = open();
    await source.start(onMessage);
    server.raw('data: this is not json\n\n');
    server.raw(': a proxy keep-alive comment\n\n');
    server.raw('event: fastmon_status\ndata: [1, 2, 3]\n\n');
    server.raw(
      'id: 7\nretry: 10\nevent: fastmon_status\r\ndata: {"run_id": "100001",\r\ndata:  "state": "ok"}\r\n\r\n',
    );
    server.raw('event: tf_file_registered\ndata: {"msg_type": "tf_file_registered", "tf_filename"');
    server.raw(': "swf.tf"}\n\n');
    server.push(registered(1));
    await waitUntil(() => received.length === 3, 'three messages');
    expect(received).toEqual([
      { msg_type: 'fastmon_status', run_id: '100001', state: 'ok' },
      { msg_type: 'tf_file_registered', tf_filename: 'swf.tf' },
      registered(1),
    ]);
    expect(source.status()).toBe('connected');
  });

  it('reconnects when not a byte arrives for the idle timeout, and heartbeats count as bytes', async () => {
    const { source, onMessage, logs } = open({ idleTimeoutMs: 1000 });
    await source.start(onMessage);
    for (let beat = 0; beat < 15; beat++) {
      server.heartbeat();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(server.connections).toBe(1);
    await waitUntil(() => server.connections >= 2, 'a reconnect after silence');
    expect(logs.find((r) => String(r.msg).includes('not even a heartbeat'))).toBeDefined();
  });

  it('keeps delivering when the screen handler throws', async () => {
    const { source, logs } = open();
    const seen: unknown[] = [];
    await source.start((m) => {
      seen.push(m.tf_filename);
      if (seen.length === 1) throw new Error('boom');
    });
    server.push(registered(1));
    server.push(registered(2));
    await waitUntil(() => seen.length === 2, 'both messages');
    expect(logs.find((r) => (r.err as { code?: string })?.code === 'CLIENT_SOURCE_FAILED')).toBeDefined();
    expect(server.connections).toBe(1);
  });
});

describe('SSE parser', () => {
  it('assembles events from arbitrary chunk boundaries, CR, LF and CRLF alike', () => {
    const text = 'event: a\r\ndata: 1\r\n\r\n:c\rdata: x\rdata:y\r\revent: b\ndata\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SseParser();
      const events = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
      expect(events).toEqual([
        { event: 'a', data: '1' },
        { event: 'message', data: 'x\ny' },
        { event: 'b', data: '' },
      ]);
    }
  });
});

describe('catalog source', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fastmon-client-catalog-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function replay(file: string): Promise<{ source: Source; received: ClientMessage[] }> {
    const received: ClientMessage[] = [];
    const source = catalogSource({ file, logger: silentLogger() });
    await source.start((m) => received.push(m));
    await source.finished;
    return { source, received };
  }

  it('follows what CatalogRegistrar wrote to a store as tf_file_registered messages, in commit order', async () => {
    const file = path.join(dir, 'fastmon.sqlite');
    const catalog = new CatalogRegistrar(await Store.acquire({ file }), silentLogger(), true);
    await catalog.ensureStf({
      stfFilename: 'swf.100001.000001.stf',
      runNumber: 100001,
      sizeBytes: 2048,
      checksum: null,
      tfCount: 100,
      state: 'run',
      substate: 'physics',
      metadata: {},
    });
    const ids: string[] = [];
    for (const n of [0, 1]) {
      const { tfFileId } = await catalog.register({
        stfFilename: 'swf.100001.000001.stf',
        tfFilename: `swf.100001.000001.tf.${n}`,
        tfFirst: n * 10,
        tfLast: n * 10 + 4,
        tfCount: 5,
        fileSizeBytes: 512,
        checksum: n === 0 ? 'ad:0123abcd' : null,
        metadata: { run_id: '100001', processed_by: 'fastmon-agent-test-7' },
      });
      ids.push(tfFileId);
    }
    await catalog.close();

    const received: ClientMessage[] = [];
    const source = catalogSource({ file, logger: silentLogger() });
    await source.start((m) => received.push(m));
    await vi.waitFor(() => expect(received).toHaveLength(2));
    expect(source.status()).toBe('connected');
    expect(source.describe()).toContain(file);
    await source.close();
    expect(received[0]).toMatchObject({
      msg_type: 'tf_file_registered',
      tf_filename: 'swf.100001.000001.tf.0',
      stf_filename: 'swf.100001.000001.stf',
      file_size_bytes: 512,
      tf_first: 0,
      tf_last: 4,
      tf_count: 5,
      status: 'registered',
      run_id: '100001',
      processed_by: 'fastmon-agent-test-7',
      tf_file_id: ids[0],
      checksum: 'ad:0123abcd',
    });
    expect(typeof received[0]?.timestamp).toBe('string');
    expect(received[1]).toMatchObject({
      tf_filename: 'swf.100001.000001.tf.1',
      tf_first: 10,
      tf_file_id: ids[1],
    });
    expect(received[1]).not.toHaveProperty('checksum');
  });

  it('skips stf_file lines and a torn last line of a hand-written catalog', async () => {
    const file = path.join(dir, 'hand.jsonl');
    const row = (n: number, runId: unknown) =>
      JSON.stringify({
        kind: 'fastmon_file',
        tf_file_id: `id-${n}`,
        stf_file: 'swf.100002.000003.stf',
        tf_filename: `swf.100002.000003.tf.${n}`,
        file_size_bytes: null,
        checksum: null,
        status: 'registered',
        metadata: { run_id: runId },
        tf_first: n,
        tf_last: n,
        tf_count: 1,
        created_at: '2026-07-01T12:00:00.000Z',
      });
    const lines = [
      JSON.stringify({ kind: 'stf_file', stf_filename: 'swf.100002.000003.stf', run_number: 100002 }),
      row(1, 100002),
      '',
      row(2, null),
      '{"kind": "fastmon_file", "tf_filena',
    ];
    await writeFile(file, `${lines.join('\n')}`);
    const { received } = await replay(file);
    expect(received.map((m) => [m.tf_filename, m.run_id, m.processed_by, m.timestamp])).toEqual([
      ['swf.100002.000003.tf.1', '100002', null, '2026-07-01T12:00:00.000Z'],
      ['swf.100002.000003.tf.2', null, null, '2026-07-01T12:00:00.000Z'],
    ]);
  });

  it('refuses to start on a missing catalog with an error naming the file', async () => {
    const file = path.join(dir, 'missing.jsonl');
    const source = catalogSource({ file, logger: silentLogger() });
    const err = await source.start(() => {}).catch((e: unknown) => e);
    expect(isFastmonError(err, 'CLIENT_SOURCE_FAILED')).toBe(true);
    expect((err as Error).message).toContain(file);
    await expect(source.finished).rejects.toThrow(file);
  });
});
