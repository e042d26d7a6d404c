import { fileURLToPath } from 'node:url';
import { chatRequest } from './fixtures.js';
import { load, median, pinSelf, startPinned } from './harness.js';

/**
 * The simulator must never be the bottleneck: its non-streaming req/s at zero latency on
 * one core, next to Node's bare http server answering a fixed body, in one run.
 */
const simCli = fileURLToPath(new URL('../../../packages/vllm-sim/dist/cli.js', import.meta.url));
const fixed = fileURLToPath(new URL('./fixed-upstream.js', import.meta.url));
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const seconds = Number(process.env.BENCH_SECONDS ?? 4);

pinSelf(1);
const results: Record<string, number[]> = { 'node:http fixed body': [], 'vllm-sim': [] };
for (let round = 0; round < rounds; round++) {
  for (const [name, script, args] of [
    ['node:http fixed body', fixed, []],
    ['vllm-sim', simCli, ['--port', '0']],
  ] as const) {
    const server = await startPinned(0, script, [...args]);
    await load(`${server.url}/v1/chat/completions`, chatRequest, { connections: 16, seconds: 1 });
    const r = await load(`${server.url}/v1/chat/completions`, chatRequest, { connections: 16, seconds });
    if (r.errors || r.non2xx) throw new Error(`${name}: ${r.errors} errors, ${r.non2xx} non-2xx`);
    results[name]!.push(r.rps);
    await server.stop();
  }
}
const bare = median(results['node:http fixed body']!);
const sim = median(results['vllm-sim']!);
console.log(`non-streaming req/s on one core, median of ${rounds} runs of ${seconds}s, 16 connections:`);
console.log(`  node:http fixed body  ${bare.toFixed(0)}`);
console.log(`  vllm-sim              ${sim.toFixed(0)}  (${((sim / bare) * 100).toFixed(0)}% of bare node:http)`);
