// Vitest globalSetup helper: checks that the test PostgreSQL answers and hands its URL to the tests.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the test cluster's role (CREATEDB); '' only outside CI with FASTMON_TESTS_WITHOUT_POSTGRES=1. */
    pgUrl: string;
  }
}

/** The private cluster of test/setup/postgres.sh (a test-only password, loopback only): it says its URL. */
function defaultUrl(): string {
  const script = path.resolve(import.meta.dirname, 'postgres.sh');
  return execFileSync('bash', [script, 'url'], { encoding: 'utf8' }).trim();
}

export async function providePostgres(provide: TestProject['provide']): Promise<void> {
  const url = process.env.FASTMON_TEST_PG_URL || defaultUrl();
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  let failure: string | null = null;
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    failure = (err as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
  if (failure === null) {
    provide('pgUrl', url);
    return;
  }
  const diagnosis =
    `No test PostgreSQL answers at ${new URL(url).host} (${failure}).\n` +
    'The PostgreSQL registrar tests need the private cluster of test/setup/postgres.sh. Start it with:\n\n' +
    '    sudo bash test/setup/postgres.sh\n\n' +
    '(`npm test` runs that script through its `pretest` step; `npx vitest` does not.)\n' +
    'Point the tests at another server with FASTMON_TEST_PG_URL (a role that may CREATE DATABASE).';
  if (process.env.CI !== 'true' && process.env.FASTMON_TESTS_WITHOUT_POSTGRES === '1') {
    process.stderr.write(
      `\n!!! FASTMON_TESTS_WITHOUT_POSTGRES=1: PostgreSQL tests will not run.\n${diagnosis}\n\n`,
    );
    provide('pgUrl', '');
    return;
  }
  throw new Error(
    `${diagnosis}\nOnly outside CI, FASTMON_TESTS_WITHOUT_POSTGRES=1 runs the suite without it.`,
  );
}
