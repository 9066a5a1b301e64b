// The client's catalog source: follows a local store, or replays an old JSON-lines catalog file.

import { closeSync, createReadStream, existsSync, openSync, type ReadStream, readSync } from 'node:fs';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { FastmonError, messageOf } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import type { FastMonFileRow } from '../../monitor/rows.js';
import { databaseFile } from '../../store/paths.js';
import { type ClientMessage, parseObject, type Source, type SourceStatus, safeDeliver } from './source.js';
import { catalogRowMessage, storeSource } from './store.js';

export { catalogRowMessage } from './store.js';

export interface CatalogSourceOptions {
  file: string;
  logger: Logger;
}

/**
 * A local store (a SQLite file; for a `.jsonl` name, the `.sqlite` file beside it once it exists) is
 * followed live; a file of the old JSON-lines format is replayed once.
 */
export function catalogSource(o: CatalogSourceOptions): Source {
  const database = databaseFile(o.file);
  if (isSqlite(database)) return storeSource({ file: database, logger: o.logger });
  return jsonlSource(o);
}

function isSqlite(file: string): boolean {
  if (!existsSync(file)) return false;
  const header = Buffer.alloc(16);
  let fd: number | null = null;
  try {
    fd = openSync(file, 'r');
    return readSync(fd, header, 0, 16, 0) === 16 && header.toString('latin1') === 'SQLite format 3\0';
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/**
 * Streams the file line by line (a long run's catalog need not fit in memory) and delivers rows
 * in file order. `stf_file` lines and unreadable lines (a torn last line) are skipped. close()
 * ends a replay early and resolves `finished`, so nobody waits on a replay that was cancelled.
 */
function jsonlSource(o: CatalogSourceOptions): Source {
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
      safeDeliver(onMessage, catalogRowMessage(row as unknown as FastMonFileRow), logger);
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
