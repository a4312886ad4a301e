import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['gateway-server/test/**/*.test.ts', 'schemas/test/**/*.test.ts', 'lab-extension/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
