// The client's catalog source: replays a local catalog's FastMonFile rows as tf_file_registered messages.

import { createReadStream, type ReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { FastmonError, messageOf } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import type { CatalogLine } from '../../sinks/catalog.js';
import { type ClientMessage, parseObject, type Source, type SourceStatus, safeDeliver } from './source.js';

export interface CatalogSourceOptions {
  file: string;
  logger: Logger;
}

/**
 * The message a row stands for, shaped like the agent's live broadcast (codec.tfFileRegistered):
 * the catalog keeps run and agent in `metadata`, and `run_id` goes out as a string as on the wire.
 */
export function catalogRowMessage(row: CatalogLine): ClientMessage {
  const metadata = row.metadata ?? {};
  const runId = metadata.run_id;
  const message: ClientMessage = {
    msg_type: 'tf_file_registered',
    processed_by: metadata.processed_by ?? null,
    run_id: typeof runId === 'number' ? String(runId) : (runId ?? null),
    stf_filename: row.stf_file,
    tf_file_id: row.tf_file_id,
    tf_filename: row.tf_filename,
    tf_first: row.tf_first,
    tf_last: row.tf_last,
    tf_count: row.tf_count,
    file_size_bytes: row.file_size_bytes,
    status: row.status,
    timestamp: row.created_at ?? null,
  };
  if (row.checksum) message.checksum = row.checksum;
  return message;
}

/**
 * Streams the file line by line (a long run's catalog need not fit in memory) and delivers rows
 * in file order. `stf_file` lines and unreadable lines (a torn last line) are skipped. close()
 * ends a replay early and resolves `finished`, so nobody waits on a replay that was cancelled.
 */
export function catalogSource(o: CatalogSourceOptions): Source {
  const file = path.resolve(o.file);
  const logger = o.logger.child({ source: 'catalog', catalog: file });
  let state: SourceStatus = 'disconnected';
  let closed = false;
  let delivered = 0;
  let input: ReadStream | null = null;
  let lines: Interface | null = null;
  let settle!: { resolve: () => void; reject: (err: Error) => void };
  const finished = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // A consumer that never awaits `finished` must not get an unhandled rejection; awaiting still throws.
  finished.catch(() => {});

  const replay = async (reader: Interface, onMessage: (message: ClientMessage) => void): Promise<void> => {
    let number = 0;
    for await (const text of reader) {
      if (closed) break;
      number++;
      if (text.trim() === '') continue;
      const row = parseObject(text);
      if (row === null) {
        logger.warn({ line: number }, 'skipping an unreadable catalog line');
        continue;
      }
      if (row.kind !== 'fastmon_file' || typeof row.tf_filename !== 'string') continue;
      safeDeliver(onMessage, catalogRowMessage(row as unknown as CatalogLine), logger);
      delivered++;
    }
  };

  return {
    finished,
    async start(onMessage) {
      if (closed || input) return;
      state = 'connecting';
      const stream = createReadStream(file, { encoding: 'utf8' });
      input = stream;
      try {
        await new Promise<void>((resolve, reject) => {
          stream.once('open', () => resolve());
          stream.once('error', reject);
        });
      } catch (err) {
        state = 'disconnected';
        const error = new FastmonError(
          'CLIENT_SOURCE_FAILED',
          `cannot read catalog ${file}: ${messageOf(err)}`,
          { file },
          { cause: err },
        );
        settle.reject(error);
        throw error;
      }
      state = 'connected';
      const reader = createInterface({ input: stream, crlfDelay: Infinity });
      lines = reader;
      replay(reader, onMessage).then(
        () => {
          if (!closed) {
            state = 'done';
            logger.info({ delivered }, 'catalog replay finished');
          }
          settle.resolve();
        },
        (err: unknown) => {
          state = 'disconnected';
          const error = new FastmonError(
            'CLIENT_SOURCE_FAILED',
            `catalog replay of ${file} failed: ${messageOf(err)}`,
            {
              file,
              delivered,
            },
          );
          logger.error({ err: error }, error.message);
          settle.reject(error);
        },
      );
    },
    describe() {
      return `catalog ${file} (replay${state === 'done' ? `, ${delivered} done` : ''})`;
    },
    status() {
      return state;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (state !== 'done') state = 'disconnected';
      lines?.close();
      input?.destroy();
      settle.resolve();
    },
  };
}
