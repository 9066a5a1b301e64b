import { defineConfig } from 'vitest/config';

// The chaos test kills and restarts the shared broker: it runs on its own, after the main suite.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 420_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
