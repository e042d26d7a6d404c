import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import express from 'express';
import { clientErrorHandler, createGateway, errorHandler, fallbackHandler, type Gateway, type GatewayOptions } from '@tera-gw/gateway';
import { RedisBudgetStore, RedisStore } from '@tera-gw/rate-limit-redis';
import { RedisResponseStore } from '@tera-gw/responses';
import { Redis } from 'ioredis';
import { spawnSimulator, type SimulatorProcess } from '@tera-gw/vllm-sim';
import { setUpTracing } from './otel.js';

/**
 * The main job: the gateway in an Express app. Environment:
 *   PORT (8787), HOST (127.0.0.1), UPSTREAM_URLS (comma-separated vLLM base URLs; unset:
 *   two embedded vllm-sim replicas), GATEWAY_KEYS (path to a JSON array of
 *   { key, models, concurrency, tokensPerSecond, team, operator, budget }; unset: one development
 *   key, printed), REDIS_URL (limiter state, budgets and stored responses in Redis), OTEL_TRACES_EXPORTER (console | otlp: spans),
 *   ROUTING (cache-aware | least-request), RESPONSES_SECRET (comma-separated secrets that seal
 *   reasoning for stateless Responses clients; the first seals, all open), RESPONSES_STORE
 *   (`off` for zero retention), CACHE_ISOLATION (key | team | none: who shares vLLM's prefix
 *   cache), CACHE_SALT_SECRET (the same on every host in front of the same replicas),
 *   MODEL_ALIASES (JSON: other model names this model answers to, e.g. {"gpt-4o-mini":"openai/gpt-oss-20b"}),
 *   ADMISSION (`off`: no queueing at the gateway when the pool is full), MAX_NUM_SEQS (the replicas'
 *   --max-num-seqs; unset: learned from their /metrics), FALLBACK_URL / FALLBACK_API_KEY /
 *   FALLBACK_MODEL (an OpenAI-compatible provider that takes what would wait over OVERFLOW_AFTER_MS
 *   (5000) or be refused), PASSTHROUGH (comma-separated vLLM paths offered raw, e.g. /tokenize,/v1/completions).
 */
const port = Number(process.env.PORT ?? 8787);
const host = process.env.HOST ?? '127.0.0.1';

function fail(message: string): never {
  console.error(`express-gateway: ${message}`);
  process.exit(1);
}

const stopTracing = await setUpTracing();

const sims: SimulatorProcess[] = [];
let replicas = (process.env.UPSTREAM_URLS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
if (!replicas.length) {
  // Processes of their own: a prompt they count or a stream they pace never holds the gateway's event loop.
  const pacing = ['--ttft-ms', String(Number(process.env.SIM_TTFT_MS ?? 80)), '--itl-ms', String(Number(process.env.SIM_ITL_MS ?? 8))];
  sims.push(...(await Promise.all([spawnSimulator(pacing), spawnSimulator(pacing)])));
  replicas = sims.map((s) => s.url);
  console.log(`no UPSTREAM_URLS: started two embedded vllm-sim replicas at ${replicas.join(', ')}`);
}

let keys: NonNullable<Exclude<GatewayOptions['auth'], false>['keys']>;
let devKey: string | undefined;
if (process.env.GATEWAY_KEYS) {
  try {
    keys = JSON.parse(readFileSync(process.env.GATEWAY_KEYS, 'utf8')) as typeof keys;
  } catch (err) {
    fail(`cannot read GATEWAY_KEYS=${process.env.GATEWAY_KEYS}: ${(err as Error).message}`);
  }
} else {
  devKey = `sk-tera-dev-${randomBytes(18).toString('base64url')}`;
  // The development key is the operator's: it also reads replica details on /health.
  keys = [{ key: devKey, id: 'dev', models: '*', concurrency: 16, tokensPerSecond: 20_000, operator: true }];
}

const store = process.env.REDIS_URL ? new RedisStore({ url: process.env.REDIS_URL }) : undefined;
// Keys with a `budget` spend it here: one budget across every host on the same Redis.
const budgetStore = process.env.REDIS_URL ? new RedisBudgetStore({ url: process.env.REDIS_URL }) : undefined;
const responsesRedis = process.env.REDIS_URL ? new Redis(process.env.REDIS_URL) : undefined;
const responseSecrets = (process.env.RESPONSES_SECRET ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
if (!responseSecrets.length && process.env.UPSTREAM_URLS)
  console.warn('RESPONSES_SECRET is unset: sealed reasoning opens only on this process until it restarts');

let aliases: Record<string, string> | undefined;
if (process.env.MODEL_ALIASES) {
  try {
    aliases = JSON.parse(process.env.MODEL_ALIASES) as Record<string, string>;
  } catch (err) {
    fail(`MODEL_ALIASES is not JSON: ${(err as Error).message}`);
  }
}

const maxNumSeqs = process.env.MAX_NUM_SEQS ? Number(process.env.MAX_NUM_SEQS) : undefined;
if (maxNumSeqs !== undefined && !(Number.isInteger(maxNumSeqs) && maxNumSeqs > 0))
  fail(`MAX_NUM_SEQS must be a positive integer, got '${process.env.MAX_NUM_SEQS}'`);
if (process.env.ADMISSION && !['on', 'off'].includes(process.env.ADMISSION))
  fail(`ADMISSION must be on or off, got '${process.env.ADMISSION}'`);
const overflowAfterMs = Number(process.env.OVERFLOW_AFTER_MS ?? 5000);
if (!(Number.isInteger(overflowAfterMs) && overflowAfterMs >= 0))
  fail(`OVERFLOW_AFTER_MS must be a whole number of ms, got '${process.env.OVERFLOW_AFTER_MS}'`);
const fallback = process.env.FALLBACK_URL
  ? {
      url: process.env.FALLBACK_URL,
      ...(process.env.FALLBACK_API_KEY ? { apiKey: process.env.FALLBACK_API_KEY } : {}),
      ...(process.env.FALLBACK_MODEL ? { model: process.env.FALLBACK_MODEL } : {}),
    }
  : undefined;
if (fallback && process.env.ADMISSION === 'off') fail('FALLBACK_URL takes overflow from admission: it needs ADMISSION on');

// vLLM endpoints offered raw, behind the same guards as chat (e.g. `/tokenize,/detokenize,/v1/completions`).
const passthroughPaths = (process.env.PASSTHROUGH ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

let gateway: Gateway;
try {
  gateway = createGateway({
    replicas,
    auth: { keys },
    rateLimit: store ? { store } : {},
    budgets: budgetStore ? { store: budgetStore } : {},
    ...(aliases ? { models: { aliases } } : {}),
    ...(passthroughPaths.length ? { passthrough: passthroughPaths } : {}),
    admission: process.env.ADMISSION === 'off' ? false : fallback ? { overflow: { afterMs: overflowAfterMs } } : {},
    responses: {
      ...(process.env.RESPONSES_STORE === 'off'
        ? { store: false as const }
        : responsesRedis
          ? { store: new RedisResponseStore({ client: responsesRedis }) }
          : {}),
      ...(responseSecrets.length ? { secrets: responseSecrets } : {}),
    },
    upstream: {
      health: { intervalMs: 5000 },
      ...(process.env.ROUTING ? { routing: process.env.ROUTING as 'cache-aware' | 'least-request' } : {}),
      ...(process.env.CACHE_ISOLATION ? { cacheIsolation: process.env.CACHE_ISOLATION as 'key' | 'team' | 'none' } : {}),
      ...(process.env.CACHE_SALT_SECRET ? { cacheSaltSecret: process.env.CACHE_SALT_SECRET } : {}),
      ...(maxNumSeqs ? { maxNumSeqs } : {}),
      ...(fallback ? { fallback } : {}),
    },
  });
} catch (err) {
  fail((err as Error).message);
}

const app = express();
app.disable('x-powered-by');
app.get('/health', gateway.health);
// Prometheus scrapes here with an operator key (`authorization` in the scrape config).
app.get('/metrics', gateway.metrics);
app.use('/v1', gateway);
// Everything else is answered in the gateway's error shape too: 404, or 405 with Allow on a known path.
app.use(fallbackHandler({ '/health': ['GET', 'HEAD'], '/metrics': ['GET', 'HEAD'] }));
app.use(errorHandler());

// Slow clients may not hold a connection forever (slowloris): headers within 15 s, a whole
// request within 60 s, checked every second (Node's default check runs every 30 s).
const server = createServer(
  { headersTimeout: 15_000, requestTimeout: 60_000, connectionsCheckingInterval: 1000, keepAliveTimeout: 65_000 },
  app,
);
// Headers over Node's limit, or bytes that are not HTTP: a JSON 431 or 400, not a bare status line.
server.on('clientError', clientErrorHandler());
server.listen(port, host, () => {
  const url = `http://${host}:${port}`;
  console.log(`gateway listening on ${url}`);
  const key = devKey ?? '<one of your GATEWAY_KEYS>';
  if (devKey) console.log(`development API key (this run only): ${devKey}`);
  console.log(
    `Codex CLI: TERA_API_KEY=${key} codex exec -m openai/gpt-oss-20b -c model_provider=tera -c 'model_providers.tera.name="tera"' -c 'model_providers.tera.base_url="${url}/v1"' -c 'model_providers.tera.env_key="TERA_API_KEY"' -c 'model_providers.tera.wire_api="responses"' "Say hello"`,
  );
  console.log(
    `try: curl -s ${url}/v1/chat/completions -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"What is the weather in Paris?"}]}'`,
  );
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: draining streams in flight, then stopping`);
  server.close();
  await gateway.close();
  await store?.close();
  responsesRedis?.disconnect();
  await Promise.all(sims.map((s) => s.close()));
  await stopTracing?.();
  process.exit(0);
}
process.once('SIGINT', () => void shutdown('SIGINT'));
process.once('SIGTERM', () => void shutdown('SIGTERM'));
