import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', 'test/bench/**'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Suites start real servers and child processes on loopback; two workers fit a 2-core machine.
    maxWorkers: 2,
    // The soak and back-pressure suites measure the heap after a collection.
    execArgv: ['--expose-gc'],
  },
});
