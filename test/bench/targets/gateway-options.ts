import type { GatewayOptions } from '@tera-gw/gateway';

/** Every stage on: auth, limiter (memory store), breaker, Harmony, reasoning, tool calls, telemetry with no SDK (no-op). */
export function benchGatewayOptions(upstream: string): GatewayOptions {
  const routing = process.env.ROUTING as 'cache-aware' | 'least-request' | undefined;
  return {
    replicas: (process.env.UPSTREAM_URLS ?? upstream).split(','),
    auth: { keys: [{ key: 'sk-tera-bench-key-0001', id: 'bench', concurrency: 100_000, tokensPerSecond: 1e12 }] },
    rateLimit: {},
    // BENCH_PROMETHEUS=off measures the gateway without its Prometheus meter provider.
    ...(process.env.BENCH_PROMETHEUS === 'off' ? { prometheus: false as const } : {}),
    // BENCH_ADMISSION=off measures routing without queueing at the gateway.
    ...(process.env.BENCH_ADMISSION === 'off' ? { admission: false as const } : {}),
    // BENCH_OFF=harmony,reasoning,... turns those options off, to measure what each stage costs.
    ...Object.fromEntries(
      (process.env.BENCH_OFF ?? '')
        .split(',')
        .filter(Boolean)
        .map((name) => [name, false]),
    ),
    upstream: { health: { intervalMs: 5000, metricsIntervalMs: 500 }, ...(routing ? { routing } : {}) },
  };
}
