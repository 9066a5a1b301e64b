// Creating and dropping the throw-away databases of tests and the bench on the test PostgreSQL.

import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** Runs one statement on its own connection. */
export async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Drops a database. WITH (FORCE) ends our own leftover sessions, but refuses when an autovacuum
 * worker is in it (not a role we may signal); a plain DROP then cancels the worker itself, and is
 * retried while a session of ours is still closing.
 */
export async function dropDatabase(url: string, name: string): Promise<void> {
  try {
    await adminQuery(url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    return;
  } catch {}
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(url, `DROP DATABASE IF EXISTS ${name}`);
      return;
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(250);
    }
  }
}
