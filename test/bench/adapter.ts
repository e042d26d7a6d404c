import { fileURLToPath } from 'node:url';
import { chatRequest, streamRequest } from './fixtures.js';
import { load, median, pinSelf, startPinned, type Server } from './harness.js';
import { latencyRun, percentile } from './latency.js';

/**
 * The vLLM adapter alone versus a bare node:http pipe proxy, in one run: added latency at
 * one connection (p50, p90 over direct), CPU per request and per streamed event.
 */
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

pinSelf(1);
const upstream = await startPinned(1, here('./fixed-upstream.js'));
const targets: Record<string, string | undefined> = {
  direct: undefined,
  'pipe-proxy': here('./targets/pipe-proxy.js'),
  adapter: here('./targets/adapter.js'),
};
if (process.env.BENCH_MINIMAL) targets.minimal = here('./targets/minimal.js');
const figures: Record<string, Record<string, number[]>> = {};
const add = (target: string, key: string, v: number) => ((figures[target] ??= {})[key] ??= []).push(v);

for (let round = 0; round < rounds; round++) {
  for (const [name, script] of Object.entries(targets)) {
    let server: Server | undefined;
    let url = upstream.url;
    if (script) {
      server = await startPinned(0, script, [], { UPSTREAM_URL: upstream.url });
      url = server.url;
    }
    const endpoint = `${url}/v1/chat/completions`;
    const timings = await latencyRun(endpoint, chatRequest, 1500);
    add(
      name,
      'p50',
      percentile(
        timings.map((t) => t.totalUs),
        50,
      ),
    );
    add(
      name,
      'p90',
      percentile(
        timings.map((t) => t.totalUs),
        90,
      ),
    );
    if (server) {
      const cpu0 = server.cpuMicros();
      const r = await load(endpoint, chatRequest, { connections: 32, seconds: 4 });
      add(name, 'rps', r.rps);
      add(name, 'cpuPerReq', (server.cpuMicros() - cpu0) / r.requests);
      if (name === 'minimal') {
        await server.stop();
        continue;
      }
      const s0 = server.cpuMicros();
      const streams = await latencyRun(endpoint, streamRequest, 60);
      add(name, 'cpuPerEvent', (server.cpuMicros() - s0) / ((streams.length + 60) * 1000));
      await server.stop();
    }
  }
}
await upstream.stop();
const m = (t: string, k: string) => median(figures[t]?.[k] ?? [NaN]);
const direct50 = m('direct', 'p50');
const direct90 = m('direct', 'p90');
console.log(`median of ${rounds} interleaved rounds; latency at 1 connection over a zero-delay upstream`);
console.log('target       added p50   added p90   req/s(1 core)  CPU us/req  CPU us/event');
for (const t of Object.keys(targets).filter((t) => t !== 'direct')) {
  console.log(
    `${t.padEnd(12)} ${(m(t, 'p50') - direct50).toFixed(0).padStart(6)} us  ${(m(t, 'p90') - direct90).toFixed(0).padStart(6)} us  ${m(t, 'rps').toFixed(0).padStart(12)}  ${m(t, 'cpuPerReq').toFixed(0).padStart(10)}  ${m(t, 'cpuPerEvent').toFixed(2).padStart(12)}`,
  );
}
console.log(
  `adapter / pipe-proxy: req/s ${(m('adapter', 'rps') / m('pipe-proxy', 'rps')).toFixed(2)}x, CPU per request ${(m('adapter', 'cpuPerReq') / m('pipe-proxy', 'cpuPerReq')).toFixed(2)}x`,
);
