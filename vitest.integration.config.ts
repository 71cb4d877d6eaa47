import { defineConfig } from 'vitest/config';

// Integration tier: real RabbitMQ, PostgreSQL, kube-apiserver + etcd and Tryton. Files run one at a
// time because several of them stop and start shared services (the broker, the ERP).
export default defineConfig({
  test: {
    include: ['test/integration/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    globalSetup: ['test/integration/global-setup.ts'],
  },
});
