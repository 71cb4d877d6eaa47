import { defineConfig } from 'vitest/config';

// e2e tier: one scenario on a real cluster (make e2e-local: make cluster's node; make e2e: kind).
// Run through those targets, which bring up the cluster and pass it in the environment.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.test.ts'],
    environment: 'node',
    testTimeout: 900_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
