import { fileURLToPath } from 'node:url';
import { chatRequest } from './fixtures.js';
import { load, median, pinSelf, startPinned, type Server } from './harness.js';

/**
 * The cost of the per-request stages on their own: auth plus the limiter (memory store, Redis
 * store), and telemetry (no SDK, and a real SDK), each added to request id + validation in
 * front of a terminal stage that answers at once (no upstream). CPU microseconds per request
 * of the pinned process, from /proc, medians of interleaved rounds.
 */
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const variants = ['base', 'auth+limiter(memory)', 'auth+limiter(redis)', 'telemetry(no SDK)', 'telemetry(SDK)'];

pinSelf(1);
const { spawn } = await import('node:child_process');
const { freePort } = await import('../helpers/ports.js');
const redisPort = await freePort();
const redis = spawn(
  'taskset',
  ['-c', '1', 'redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
  { stdio: 'ignore' },
);
await new Promise((r) => setTimeout(r, 500));

const cost: Record<string, number[]> = {};
for (let r = 0; r < rounds; r++) {
  for (const variant of variants) {
    const server: Server = await startPinned(0, here('./targets/stages.js'), [], {
      VARIANT: variant,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    });
    const url = `${server.url}/v1/chat/completions`;
    const headers = { authorization: 'Bearer sk-tera-bench-key-0001' };
    await load(url, chatRequest, { connections: 16, seconds: 1, headers });
    const c0 = server.cpuMicros();
    const result = await load(url, chatRequest, { connections: 16, seconds: 3, headers });
    if (result.errors || result.non2xx) throw new Error(`${variant}: ${result.errors} errors, ${result.non2xx} non-2xx`);
    (cost[variant] ??= []).push((server.cpuMicros() - c0) / result.requests);
    await server.stop();
  }
}
redis.kill();
const base = median(cost.base!);
console.log(`\nCPU per request of the stages, median of ${rounds} rounds (terminal answers at once, no upstream)`);
for (const v of variants)
  console.log(
    `${v.padEnd(24)} ${median(cost[v]!).toFixed(1).padStart(7)} us   ${v === 'base' ? '' : `+${(median(cost[v]!) - base).toFixed(1)} us`}`,
  );
