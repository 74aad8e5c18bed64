import { defineConfig } from 'vitest/config';

// Tests start real registries and build real images: generous timeouts, files in parallel on 2 cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
