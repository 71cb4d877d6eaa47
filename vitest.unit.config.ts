import { defineConfig } from 'vitest/config';

// Unit tier: pure functions beside their source, no I/O.
export default defineConfig({
  test: {
    include: ['runtime/src/**/*.test.ts', 'operator/src/**/*.test.ts', 'crds/**/*.test.ts'],
    environment: 'node',
  },
});
