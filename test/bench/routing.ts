import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { createRouter } from '@tera-gw/router';
import { median, pinSelf, startPinned, type Server } from './harness.js';
import { percentile } from './latency.js';

/**
 * The routing scenarios: 4 simulator replicas with the prefix-cache model (prefill 40 us per
 * uncached prompt token, 4 sequences per batch), through the gateway with `least-request` and
 * with `cache-aware`, in one run, for two workloads (`support`: a shared system prompt
 * dominates; `agentic`: growing histories of tool results dominate; `BENCH_WORKLOAD` picks one).
 * Reports the prefix-cache hit rate (from the replicas' counters) against the single-replica
 * upper bound, TTFT p50 and p95, output tokens per second, each replica's share, and the
 * router's CPU per decision on a 32 KB prompt.
 */
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const simCli = here('../../../packages/vllm-sim/dist/cli.js');
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 64);
const TURNS = 8;
const PARALLEL = 16;
// Each replica's cache holds a quarter of the conversations comfortably, not all of them: the case
// where routing decides whether a follow-up finds its history.
const simArgs = (cacheTokens: number) => [
  '--port',
  '0',
  '--prefill-us-per-token',
  '40',
  '--max-num-seqs',
  '4',
  '--itl-ms',
  '2',
  '--kv-cache-tokens',
  String(cacheTokens),
  '--enable-prompt-tokens-details',
];
const system = 'You are the support agent of a large retailer. Follow these policies exactly and cite them. '.repeat(90);
const KEY = 'sk-tera-bench-key-0001';

pinSelf(1);

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').at(-1));
  return sum;
}

interface Turn {
  ttftMs: number;
  outputTokens: number;
}

/** One streamed turn; time to the first content byte. */
function turn(url: string, messages: unknown[]): Promise<Turn & { content: string }> {
  const u = new URL(`${url}/v1/chat/completions`);
  const body = JSON.stringify({
    model: 'openai/gpt-oss-20b',
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 160,
    messages,
  });
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let first = 0;
    let text = '';
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (!first) first = performance.now();
          text += d;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
          let content = '';
          let outputTokens = 0;
          for (const event of text.split('\n\n')) {
            if (!event.startsWith('data: {')) continue;
            const chunk = JSON.parse(event.slice(6)) as {
              choices: Array<{ delta: { content?: string } }>;
              usage?: { completion_tokens: number };
            };
            content += chunk.choices[0]?.delta.content ?? '';
            if (chunk.usage) outputTokens = chunk.usage.completion_tokens;
          }
          resolve({ ttftMs: first - start, outputTokens, content });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A workload: how many conversations, turns and in flight, the replicas' KV cache, and what
 * each turn adds to the history. `support`: the shared ~2,000-token system prompt dominates.
 * `agentic`: a ~500-token system prompt, then each turn a tool result of ~2,000 tokens, so
 * histories grow to 20k+ tokens and the replicas' caches hold about half of all conversations.
 */
interface Workload {
  name: string;
  conversations: number;
  turns: number;
  parallel: number;
  cacheTokens: number;
  system: string;
  opening: (c: number) => string;
  followUp: (c: number, t: number) => string;
  /** Time between an answer and the next turn (the agent running its tool); 0 sends at once. */
  thinkMs: (c: number, t: number) => number;
}

const support: Workload = {
  name: 'support',
  conversations: CONVERSATIONS,
  turns: TURNS,
  parallel: PARALLEL,
  cacheTokens: 16_000,
  system,
  opening: (c) => `Customer ${c}: where is my order ${c * 7919}?`,
  followUp: (_c, t) =>
    `Follow-up ${t}: and what about the refund for item ${t}? ${'Please check the delivery notes and the invoice again. '.repeat(5)}`,
  thinkMs: () => 0,
};

/** About 2,000 tokens of rows that differ per conversation and turn, like a tool's output. */
const toolResult = (c: number, t: number) =>
  Array.from(
    { length: 110 },
    (_, i) =>
      `row ${c}.${t}.${i}: sku ${(c * 7919 + t * 104729 + i * 31) % 99991} status ${['open', 'shipped', 'held', 'returned'][(c + t + i) % 4]} qty ${(i * 7 + c) % 13}`,
  ).join('\n');

const agentic: Workload = {
  name: 'agentic',
  conversations: Number(process.env.BENCH_AGENT_CONVERSATIONS ?? 40),
  turns: 10,
  // 4 replicas x 4 sequences; with the tools' pauses, 20 conversations keep them about 70% busy.
  parallel: Number(process.env.BENCH_AGENT_PARALLEL ?? 20),
  cacheTokens: Number(process.env.BENCH_AGENT_CACHE_TOKENS ?? 64_000),
  system: 'You are a coding agent. Use the tools, read their results, and answer briefly. '.repeat(30),
  opening: (c) => `Task ${c}: find why the nightly export for warehouse ${c} fails and fix it.`,
  followUp: (c, t) => `Tool result (query_${t}):\n${toolResult(c, t)}`,
  // The tool runs 200 to 800 ms: other turns end meanwhile, so the replica a turn just left is not
  // the least loaded by the time the next one comes (with no pause, least-request is sticky by accident).
  thinkMs: (c, t) => 200 + ((c * 37 + t * 101) % 600),
};

async function workload(url: string, w: Workload): Promise<{ turns: Turn[]; seconds: number }> {
  const turns: Turn[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: w.parallel }, async () => {
      for (let c = next++; c < w.conversations; c = next++) {
        const messages: Array<{ role: string; content: string }> = [
          { role: 'system', content: w.system },
          { role: 'user', content: w.opening(c) },
        ];
        for (let t = 0; t < w.turns; t++) {
          const r = await turn(url, messages);
          turns.push(r);
          messages.push({ role: 'assistant', content: r.content }, { role: 'user', content: w.followUp(c, t) });
          const pause = w.thinkMs(c, t);
          if (pause) await new Promise((resolve) => setTimeout(resolve, pause));
        }
      }
    }),
  );
  return { turns, seconds: (performance.now() - started) / 1000 };
}

async function scenario(w: Workload, name: string, routing?: 'cache-aware' | 'least-request') {
  const replicas: Server[] = [];
  for (let i = 0; i < (routing ? 4 : 1); i++) replicas.push(await startPinned(1, simCli, simArgs(routing ? w.cacheTokens : 10_000_000)));
  const urls = replicas.map((r) => r.url);
  let gateway: Server | undefined;
  if (routing)
    gateway = await startPinned(0, here('./targets/express.js'), [], {
      UPSTREAM_URL: urls[0]!,
      UPSTREAM_URLS: urls.join(','),
      ROUTING: routing,
    });
  const { turns, seconds } = await workload(gateway?.url ?? urls[0]!, w);
  const queries = (await Promise.all(urls.map((u) => metric(u, 'vllm:prefix_cache_queries_total')))).reduce((a, b) => a + b, 0);
  const hits = (await Promise.all(urls.map((u) => metric(u, 'vllm:prefix_cache_hits_total')))).reduce((a, b) => a + b, 0);
  const served = await Promise.all(urls.map((u) => metric(u, 'vllm:request_success_total')));
  // Each replica also served one warm-up completion.
  const shares = served.map((s) => s - (routing ? 1 : 0));
  const total = shares.reduce((a, b) => a + b, 0);
  await gateway?.stop();
  for (const r of replicas) await r.stop();
  const ttft = turns.map((t) => t.ttftMs);
  return {
    name,
    hitRate: hits / queries,
    ttftP50: percentile(ttft, 50),
    ttftP95: percentile(ttft, 95),
    outputTokensPerSecond: turns.reduce((a, t) => a + t.outputTokens, 0) / seconds,
    maxShareOverMean: Math.max(...shares) / (total / shares.length),
    shares,
  };
}

const only = process.env.BENCH_WORKLOAD;
const results: Array<{
  w: Workload;
  upper: Awaited<ReturnType<typeof scenario>>;
  least: Awaited<ReturnType<typeof scenario>>;
  aware: Awaited<ReturnType<typeof scenario>>;
}> = [];
for (const w of [support, agentic].filter((x) => !only || x.name === only)) {
  const upper = await scenario(w, 'one replica, unbounded cache (hit-rate bound)');
  const least = await scenario(w, 'least-request', 'least-request');
  const aware = await scenario(w, 'cache-aware', 'cache-aware');
  results.push({ w, upper, least, aware });
}

// Router CPU per decision on a 32 KB prompt, in this process.
const router = createRouter();
const pool = Array.from({ length: 4 }, (_, i) => ({ id: `r${i}`, inFlight: i, metrics: { waiting: 1, kvCacheUsage: 0.3 } }));
const big = { role: 'system', content: 'You are a careful assistant. '.repeat(1130) };
const costs: number[] = [];
for (let round = 0; round < 5; round++) {
  const n = 5000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const req = { prompt: { messages: [big, { role: 'user', content: `question ${round}-${i}` }] } };
    router.record?.(req, router.pick(req, pool)!);
  }
  costs.push(Number(process.hrtime.bigint() - t0) / n / 1000);
}

for (const { w, upper, least, aware } of results) {
  console.log(
    w.name === 'support'
      ? `\nsupport: ${w.conversations} conversations x ${w.turns} turns, ${w.parallel} in flight, ~2,000-token shared system prompt; 4 replicas with 16k-token KV caches (prefill 40 us/token, 4 seqs per batch)`
      : `\nagentic: ${w.conversations} conversations x ${w.turns} turns, ${w.parallel} in flight, ~500-token system prompt, a ~2,000-token tool result and a 200-800 ms tool pause per turn (histories to ~22k tokens); 4 replicas with ${w.cacheTokens / 1000}k-token KV caches (prefill 40 us/token, 4 seqs per batch)`,
  );
  console.log('scenario                                   hit rate  of bound  TTFT p50 ms  TTFT p95 ms  out tok/s  max share/mean');
  for (const r of [upper, least, aware]) {
    console.log(
      `${r.name.padEnd(42)} ${(r.hitRate * 100).toFixed(1).padStart(7)}%  ${((r.hitRate / upper.hitRate) * 100).toFixed(0).padStart(7)}%  ${r.ttftP50.toFixed(1).padStart(11)}  ${r.ttftP95.toFixed(1).padStart(11)}  ${r.outputTokensPerSecond.toFixed(0).padStart(9)}  ${r.maxShareOverMean.toFixed(2).padStart(14)}`,
    );
  }
  console.log(`TTFT p95, least-request / cache-aware: ${(least.ttftP95 / aware.ttftP95).toFixed(2)}x`);
  console.log(`replica shares: least-request ${least.shares.join('/')}, cache-aware ${aware.shares.join('/')}`);
}
const routerUs = median(costs);
console.log(`router pick + record on a 32 KB prompt: ${routerUs.toFixed(1)} us per decision (median of 5 x 5,000)`);

// The cache-aware routing targets, read off the agentic workload of this run.
const agenticRun = results.find((r) => r.w.name === 'agentic');
if (agenticRun) {
  const { upper, least, aware } = agenticRun;
  const goals: Array<[string, string, boolean]> = [
    [
      `TTFT p95, least-request / cache-aware`,
      `${(least.ttftP95 / aware.ttftP95).toFixed(2)}x, target >= 3x`,
      least.ttftP95 / aware.ttftP95 >= 3,
    ],
    [
      `output tok/s, cache-aware vs least-request`,
      `${aware.outputTokensPerSecond.toFixed(0)} vs ${least.outputTokensPerSecond.toFixed(0)}, target higher`,
      aware.outputTokensPerSecond > least.outputTokensPerSecond,
    ],
    [
      `hit rate, cache-aware, of the one-replica bound`,
      `${((aware.hitRate / upper.hitRate) * 100).toFixed(0)}%, target >= 90%`,
      aware.hitRate / upper.hitRate >= 0.9,
    ],
    [`router per decision, 32 KB prompt`, `${routerUs.toFixed(1)} us, target < 20 us`, routerUs < 20],
  ];
  console.log('\nrouting targets (agentic workload):');
  for (const [name, value, met] of goals) console.log(`  ${name.padEnd(48)} ${value.padEnd(34)} ${met ? 'met' : 'NOT met'}`);
}
