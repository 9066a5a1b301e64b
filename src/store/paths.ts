// Where the local store lives, and which files of older versions it imports, from the configuration.

import path from 'node:path';
import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { StoreOptions } from './store.js';

/** The catalog's file name before the store: still imported from beside the database. */
export const OLD_CATALOG_NAME = 'fastmon-catalog.jsonl';

/**
 * `agent.catalog` names the database. A name ending in `.jsonl` is a command line written for the
 * old JSON-lines catalog: the database goes beside it with `.sqlite` instead, and the JSON-lines
 * file is what gets imported.
 */
export function databaseFile(catalog: string): string {
  const resolved = path.resolve(catalog);
  return resolved.endsWith('.jsonl') ? `${resolved.slice(0, -'.jsonl'.length)}.sqlite` : resolved;
}

export function storeOptions(config: Config, logger: Logger): StoreOptions {
  const catalog = path.resolve(config.agent.catalog);
  const file = databaseFile(catalog);
  return {
    file,
    logger,
    legacy: {
      catalog: catalog.endsWith('.jsonl') ? catalog : path.join(path.dirname(file), OLD_CATALOG_NAME),
      // scan.ledger and agent.outbox now name only the old files to import.
      ledger: config.scan.ledger ? path.resolve(config.scan.ledger) : undefined,
      outbox: config.agent.outbox ? path.resolve(config.agent.outbox) : undefined,
    },
  };
}
