import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { FlowScheduler } from '@tera-gw/admission';
import { createGateway, type Gateway, type GatewayOptions } from '@tera-gw/gateway';
import { percentile } from './latency.js';

/**
 * A full pool: 2 simulator replicas that run 4 sequences each (the rest wait in their FIFO), a
 * flood tenant with 40 streams in a closed loop, a backlogged tenant with 8, and an interactive
 * tenant sending one request every 200 ms. The same traffic straight to the replicas
 * (forwarding), through the gateway with admission off, and with admission on (capacity learned
 * from the replicas' /metrics, nothing configured), in one run. Reports the interactive tenant's
 * TTFT against the same tenant alone, completions per tenant, total completions, refusals by status.
 */
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const simCli = here('../../../packages/vllm-sim/dist/cli.js');
const model = 'openai/gpt-oss-20b';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const WARM_UP_SECONDS = 6;
const FLOOD = 40;
const BACKLOG = 8;
const INTERACTIVE_EVERY_MS = 200;
const BULK_TOKENS = 48;
const INTERACTIVE_TOKENS = 8;
const keys = { flood: 'sk-tera-bench-flood', backlog: 'sk-tera-bench-backlog', interactive: 'sk-tera-bench-interactive' } as const;
type Tenant = keyof typeof keys;

async function spawnSim(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [simCli, '--port', '0', '--max-num-seqs', '4', '--ttft-ms', '40', '--itl-ms', '12'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  return { url, child };
}

interface Outcome {
  tenant: Tenant;
  startedAt: number;
  /** Start of the measured window of its scenario. */
  windowStart: number;
  status: number;
  retryAfter: boolean;
  ttftMs: number | undefined;
  at: number;
}

/** One streamed request; TTFT is the first chunk carrying reasoning or content. */
async function stream(base: string, tenant: Tenant, maxTokens: number, signal: AbortSignal): Promise<Omit<Outcome, 'windowStart'>> {
  const started = performance.now();
  try {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys[tenant]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: `${tenant} ${started}` }] }),
      signal,
    });
    let ttftMs: number | undefined;
    if (res.status === 200 && res.body) {
      const decoder = new TextDecoder();
      for await (const piece of res.body) {
        if (ttftMs === undefined && /"(reasoning|content)":"[^"]/.test(decoder.decode(piece as Uint8Array, { stream: true })))
          ttftMs = performance.now() - started;
      }
    } else await res.text();
    return { tenant, startedAt: started, status: res.status, retryAfter: res.headers.has('retry-after'), ttftMs, at: performance.now() };
  } catch {
    return { tenant, startedAt: started, status: 0, retryAfter: false, ttftMs: undefined, at: performance.now() };
  }
}

/** Round-robin over the replicas, as a client without a gateway would spread its load. */
function bases(urls: string[]): () => string {
  let i = 0;
  return () => urls[i++ % urls.length]!;
}

async function scenario(next: () => string, tenants: { flood: boolean; backlog: boolean }): Promise<Outcome[]> {
  const outcomes: Array<Omit<Outcome, 'windowStart'>> = [];
  const stop = new AbortController();
  const start = performance.now();
  const end = start + (WARM_UP_SECONDS + SECONDS) * 1000;
  const closedLoop = async (tenant: Tenant) => {
    while (performance.now() < end) {
      const o = await stream(next(), tenant, BULK_TOKENS, stop.signal);
      outcomes.push(o);
      if (o.status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
  };
  const loops: Array<Promise<void>> = [];
  if (tenants.flood) for (let i = 0; i < FLOOD; i++) loops.push(closedLoop('flood'));
  if (tenants.backlog) for (let i = 0; i < BACKLOG; i++) loops.push(closedLoop('backlog'));
  const interactive: Array<Promise<void>> = [];
  while (performance.now() < end) {
    interactive.push(stream(next(), 'interactive', INTERACTIVE_TOKENS, stop.signal).then((o) => void outcomes.push(o)));
    await new Promise((r) => setTimeout(r, INTERACTIVE_EVERY_MS));
  }
  await Promise.all([...loops, ...interactive]);
  stop.abort();
  // Only what finished inside the measured window counts.
  const from = start + WARM_UP_SECONDS * 1000;
  return outcomes.filter((o) => o.at >= from && o.at <= end).map((o) => ({ ...o, windowStart: from }));
}

async function mount(
  replicas: string[],
  admission: GatewayOptions['admission'],
): Promise<{ gateway: Gateway; server: Server; url: string }> {
  const gateway = createGateway({
    replicas,
    auth: {
      keys: Object.entries(keys).map(([id, key]) => ({ key, id, concurrency: 1000, tokensPerSecond: 1e9 })),
    },
    telemetry: false,
    admission,
    upstream: { health: { warmUp: false, metricsIntervalMs: 500 } },
  });
  const app = express();
  app.use('/v1', gateway);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  await gateway.ready(10_000);
  return { gateway, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function report(name: string, outcomes: Outcome[], alone: { p50: number; p95: number }) {
  const ok = outcomes.filter((o) => o.status === 200);
  // TTFT of requests sent inside the window (a request sent during warm-up may finish inside it).
  const ttft = ok.filter((o) => o.tenant === 'interactive' && o.ttftMs !== undefined && o.startedAt >= o.windowStart).map((o) => o.ttftMs!);
  const by = (t: Tenant) => ok.filter((o) => o.tenant === t).length;
  const refusals = new Map<string, number>();
  for (const o of outcomes) {
    if (o.status === 200) continue;
    const kind = `${o.status}${o.retryAfter ? '' : ' without Retry-After'}`;
    refusals.set(kind, (refusals.get(kind) ?? 0) + 1);
  }
  const p50 = percentile(ttft, 50);
  const p95 = percentile(ttft, 95);
  const flood = by('flood');
  const backlog = by('backlog');
  console.log(
    `${name.padEnd(26)} interactive TTFT p50 ${p50.toFixed(0).padStart(5)} ms  p95 ${p95.toFixed(0).padStart(5)} ms ` +
      `(x${(p95 / alone.p95).toFixed(1)} alone)  completions: flood ${String(flood).padStart(4)}  backlog ${String(backlog).padStart(4)}  ` +
      `interactive ${String(by('interactive')).padStart(3)}  total ${String(ok.length).padStart(4)}  ` +
      `flood/backlog per tenant x${(flood / Math.max(1, backlog)).toFixed(2)}  refusals ${refusals.size ? [...refusals].map(([s, n]) => `${s}: ${n}`).join(', ') : 'none'}`,
  );
  return { p50, p95, total: ok.length };
}

const sims = [await spawnSim(), await spawnSim()];
const urls = sims.map((s) => s.url);
console.log(
  `2 replicas x 4 sequences (TTFT 40 ms, 12 ms a token); flood ${FLOOD} streams and backlog ${BACKLOG} streams of ${BULK_TOKENS} tokens ` +
    `in closed loops; interactive ${INTERACTIVE_TOKENS} tokens every ${INTERACTIVE_EVERY_MS} ms; ${SECONDS} s measured after ${WARM_UP_SECONDS} s`,
);

const on = await mount(urls, {});
const aloneOutcomes = await scenario(bases([on.url]), { flood: false, backlog: false });
const aloneTtft = aloneOutcomes.filter((o) => o.ttftMs !== undefined && o.startedAt >= o.windowStart).map((o) => o.ttftMs!);
const alone = { p50: percentile(aloneTtft, 50), p95: percentile(aloneTtft, 95) };
console.log(
  `${'interactive alone'.padEnd(26)} interactive TTFT p50 ${alone.p50.toFixed(0).padStart(5)} ms  p95 ${alone.p95.toFixed(0).padStart(5)} ms`,
);

const forwarding = report('forwarding (no gateway)', await scenario(bases(urls), { flood: true, backlog: true }), alone);
const off = await mount(urls, false);
report('gateway, admission off', await scenario(bases([off.url]), { flood: true, backlog: true }), alone);
await off.gateway.close();
off.server.close();
const admitted = report('gateway, admission on', await scenario(bases([on.url]), { flood: true, backlog: true }), alone);
console.log(
  `admission on: interactive p95 ${(forwarding.p95 / admitted.p95).toFixed(1)}x better than forwarding ` +
    `(target >= 3x; within max(3x alone, alone + 300 ms) = ${Math.max(3 * alone.p95, alone.p95 + 300).toFixed(0)} ms: ${admitted.p95 <= Math.max(3 * alone.p95, alone.p95 + 300) ? 'yes' : 'no'}); ` +
    `total completions ${((100 * admitted.total) / forwarding.total).toFixed(0)}% of forwarding (target >= 95%)`,
);
await on.gateway.close();
on.server.close();
const byTokens = await mount(urls, { fairness: 'tokens' });
report('admission on, by tokens', await scenario(bases([byTokens.url]), { flood: true, backlog: true }), alone);
await byTokens.gateway.close();
byTokens.server.close();

// The scheduling core alone, in steady state: 1,000 requests queued over 64 flows in 3 bands, each
// dispatch followed by an arrival (the first pass warms the JIT).
for (const fairness of ['requests', 'requests', 'tokens'] as const) {
  const scheduler = new FlowScheduler<number>({}, fairness === 'tokens' ? 64 : 1);
  const add = (i: number) =>
    scheduler.enqueue(i, {
      fairnessId: `flow-${i % 64}`,
      priority: i % 3,
      bytes: 512,
      cost: fairness === 'tokens' ? 200 + (i % 7) * 300 : 1,
      at: i,
    });
  for (let i = 0; i < 1000; i++) add(i);
  const N = 200_000;
  const started = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    scheduler.pop();
    add(i);
  }
  const used = process.cpuUsage(started);
  console.log(
    `scheduling core (${fairness}): ${((used.user + used.system) / N).toFixed(2)} CPU us per request (dispatch + arrival, 1,000 queued)`,
  );
}
for (const s of sims) s.child.kill();
