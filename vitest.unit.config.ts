import { defineConfig } from 'vitest/config';

// Unit tier: pure functions beside their source, no I/O.
export default defineConfig({
  test: {
    include: [
      'runtime/src/**/*.test.ts',
      'operator/src/**/*.test.ts',
      'crds/**/*.test.ts',
      'test/e2e/**/*.test.ts',
      'bench/**/*.test.ts',
    ],
    // The e2e scenario itself needs a cluster: vitest.e2e.config.ts.
    exclude: ['**/node_modules/**', '**/*.e2e.test.ts'],
    environment: 'node',
  },
});
