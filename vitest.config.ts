import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', 'test/bench/**'],
    // Simulators seed answers from their Harmony-rendered prompt, which carries a date (as vLLM's does): a fixed
    // one, as vLLM's VLLM_SYSTEM_START_DATE gives, keeps a seeded answer the same across midnight.
    env: { VLLM_SYSTEM_START_DATE: '2026-01-15' },
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Suites start real servers and child processes on loopback; two workers fit a 2-core machine.
    maxWorkers: 2,
    // The soak and back-pressure suites measure the heap after a collection.
    execArgv: ['--expose-gc'],
  },
});
