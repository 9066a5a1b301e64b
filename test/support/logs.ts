// Captures an agent's log lines (through the real logger, redaction included) for assertions.

import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log/logger.js';

export interface CapturedLogs {
  logger: Logger;
  /** Every line written so far, parsed. */
  records(): Record<string, unknown>[];
  /** Every line written so far, raw. */
  text(): string;
  find(predicate: (r: Record<string, unknown>) => boolean): Record<string, unknown> | undefined;
}

/** Every raw line captured by any logger in this test process, for the secret scan. */
export const allCapturedText: string[] = [];

export function captureLogs(level = 'debug'): CapturedLogs {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      const text = chunk.toString();
      chunks.push(text);
      allCapturedText.push(text);
      callback();
    },
  });
  const logger = createLogger({ level, destination: stream, pretty: false });
  const records = () =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    logger,
    records,
    text: () => chunks.join(''),
    find: (predicate) => records().find(predicate),
  };
}
