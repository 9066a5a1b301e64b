// The ceiling: the least an agent can do with each stf_ready (parse it, POST 7 rows, publish 7
// notifications) with no validation, sampling, logging, acknowledgement or error handling.
// Run as a child process by bench/agent-process.ts with the agent's own environment variables.

import { Pool } from 'undici';
import { KEYS_BY_NAME } from '../src/config/keys.js';
import { StompPeer } from './stomp-peer.js';

const SAMPLES = 7;

async function main(): Promise<void> {
  const monitor = new URL(process.env.SWF_MONITOR_URL as string);
  const pool = new Pool(monitor.origin, {
    // The agent's defaults, so the ceiling is measured with the same connection settings.
    connections: Number(
      process.env.FASTMON_MONITOR_CONNECTIONS || KEYS_BY_NAME.get('monitor.connections')?.default,
    ),
    pipelining: Number(
      process.env.FASTMON_MONITOR_PIPELINING || KEYS_BY_NAME.get('monitor.pipelining')?.default,
    ),
  });
  const headers = {
    authorization: `Token ${process.env.SWF_API_TOKEN}`,
    'content-type': 'application/json',
    accept: 'application/json',
  };
  const path = `${monitor.pathname.replace(/\/+$/, '')}/api/fastmon-files/`;
  const out = process.env.FASTMON_BROADCAST as string;
  const peer = await StompPeer.connect();
  const publisher = await StompPeer.connect();

  async function handle(body: string): Promise<void> {
    const message = JSON.parse(body) as { filename?: string; run_id?: string; msg_type?: string };
    if (message.msg_type !== 'stf_ready' || !message.filename) return;
    const stf = message.filename;
    await Promise.all(
      Array.from({ length: SAMPLES }, async (_, i) => {
        const row = {
          stf_file: stf,
          tf_filename: `${stf.replace(/\.stf$/, '')}_tf_${String(i + 1).padStart(3, '0')}.tf`,
          file_size_bytes: 1000,
          checksum: null,
          status: 'registered',
          tf_first: i * 100,
          tf_last: i * 100 + 14,
          tf_count: 15,
          metadata: { run_id: message.run_id, sample_index: i, processed_by: 'raw' },
        };
        const res = await pool.request({
          method: 'POST',
          path,
          headers,
          body: JSON.stringify(row),
          idempotent: true,
          blocking: false,
        });
        const created = (await res.body.json()) as { tf_file_id: string };
        publisher.send(
          out,
          JSON.stringify({
            msg_type: 'tf_file_registered',
            tf_file_id: created.tf_file_id,
            tf_filename: row.tf_filename,
            stf_filename: stf,
            run_id: message.run_id,
            file_size_bytes: row.file_size_bytes,
          }),
          { msg_type: 'tf_file_registered' },
        );
      }),
    );
  }

  // The ceiling does not reconnect: a lost connection ends it, said in its log (which the bench
  // prints when a step times out), instead of a silent stall that looks like lost messages.
  for (const [role, client] of [
    ['subscriber', peer],
    ['publisher', publisher],
  ] as const) {
    client.onError((err) => {
      process.stderr.write(`raw agent: ${role} connection to the broker lost: ${err.message}\n`);
      process.exit(1);
    });
  }
  peer.subscribe(process.env.FASTMON_SUBSCRIPTION as string, (body) => {
    handle(body).catch((err) => process.stderr.write(`raw agent: ${(err as Error).message}\n`));
  });
  process.once('SIGTERM', async () => {
    await peer.close();
    await publisher.close();
    await pool.close();
    process.exit(0);
  });
}

await main();
