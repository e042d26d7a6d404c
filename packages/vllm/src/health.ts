import { classify } from './outcome.js';
import type { Replica } from './replica.js';
import type { HealthOptions } from './options.js';

const sample = (text: string, name: string): number | undefined => {
  // Prometheus text: `name{labels} value`; summed over label sets (one per engine).
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
};

/** vLLM's load signals from `/metrics`; `vllm:gpu_cache_usage_perc` is the older name of the KV cache gauge. */
export function parseVllmMetrics(text: string): { waiting?: number; running?: number; kvCacheUsage?: number } | undefined {
  const waiting = sample(text, 'vllm:num_requests_waiting');
  const running = sample(text, 'vllm:num_requests_running');
  const kv = sample(text, 'vllm:kv_cache_usage_perc') ?? sample(text, 'vllm:gpu_cache_usage_perc');
  if (waiting === undefined && running === undefined && kv === undefined) return undefined;
  const out: { waiting?: number; running?: number; kvCacheUsage?: number } = {};
  if (waiting !== undefined) out.waiting = waiting;
  if (running !== undefined) out.running = running;
  if (kv !== undefined) out.kvCacheUsage = kv;
  return out;
}

const WARM_UP_BODY = JSON.stringify({
  model: 'openai/gpt-oss-20b',
  messages: [{ role: 'user', content: 'ping' }],
  max_tokens: 1,
});

/**
 * Active health: `GET /health` on an interval; a replica that comes (back) up is warmed
 * with one tiny completion before it takes traffic; one that fails the checks leaves rotation.
 */
export class HealthMonitor {
  private readonly options: HealthOptions | false;
  private timer: NodeJS.Timeout | undefined;
  private metricsTimer: NodeJS.Timeout | undefined;
  private readonly busy = new Set<Replica>();
  private readonly waiters = new Set<() => void>();
  private stopped = false;

  constructor(
    private readonly replicaList: () => readonly Replica[],
    options: HealthOptions | false,
    private readonly apiKey: string | undefined,
    private readonly onChange: (replica: Replica, cause?: string) => void,
    private readonly onScrape?: (replica: Replica) => void,
  ) {
    this.options = options;
  }

  private get replicas(): readonly Replica[] {
    return this.replicaList();
  }

  /** A replica that joined the set: ready at once without health checks, else checked (and warmed) now. */
  added(replica: Replica): void {
    if (this.options === false) return this.setState(replica, 'ready');
    if (this.timer) void this.check(replica);
  }

  /**
   * Passive health, as Envoy's outlier detection: a connection refused or reset before any answer
   * takes the replica out of rotation at once; the next passing health check brings it back.
   */
  markDown(replica: Replica, cause: string): void {
    if (replica.state !== 'ready' && replica.state !== 'warming') return;
    replica.consecutiveHealthFailures = Math.max(replica.consecutiveHealthFailures, 1);
    this.setState(replica, 'unhealthy', cause);
  }

  start(): void {
    if (this.options === false) {
      for (const r of this.replicas) this.setState(r, 'ready');
      return;
    }
    this.checkAll();
    this.timer = setInterval(() => this.checkAll(), this.options.intervalMs);
    // Health checks alone must not keep a process alive.
    this.timer.unref();
    if (this.options.metricsIntervalMs > 0) {
      const scrape = () => {
        for (const r of this.replicas) {
          if (r.state !== 'ready') continue;
          r.call('GET', '/metrics', { timeoutMs: 1000 })
            .then((res) => {
              // A replica without /metrics is scored on its in-flight count alone, never dropped for it.
              r.metrics = res.status === 200 ? parseVllmMetrics(res.body) : undefined;
              r.learn(r.metrics);
              this.onScrape?.(r);
            })
            .catch(() => {
              r.metrics = undefined;
            });
        }
      };
      scrape();
      this.metricsTimer = setInterval(scrape, this.options.metricsIntervalMs);
      this.metricsTimer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.metricsTimer);
    for (const w of this.waiters) w();
  }

  ready(timeoutMs: number): Promise<void> {
    if (this.replicas.some((r) => r.state === 'ready')) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no replica became ready within ${timeoutMs} ms: ${this.replicas.map((r) => `${r.id} ${r.state}`).join(', ')}`));
      }, timeoutMs);
      const check = () => {
        if (!this.stopped && !this.replicas.some((r) => r.state === 'ready')) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  private setState(replica: Replica, state: Replica['state'], cause?: string): void {
    if (replica.state === state || replica.state === 'draining') return;
    replica.state = state;
    this.onChange(replica, cause);
    for (const w of [...this.waiters]) w();
  }

  private checkAll(): void {
    for (const r of this.replicas) if (!this.busy.has(r) && r.state !== 'draining') void this.check(r);
  }

  private async check(replica: Replica): Promise<void> {
    const options = this.options;
    if (options === false || this.stopped) return;
    this.busy.add(replica);
    try {
      let cause = '';
      const healthy = await replica
        .call('GET', '/health', { timeoutMs: options.timeoutMs })
        .then((r) => {
          cause = `GET /health answered ${r.status}`;
          return r.status === 200;
        })
        .catch((err: Error) => {
          cause = `GET /health failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
          return false;
        });
      if (this.stopped) return;
      if (!healthy) {
        replica.consecutiveHealthFailures++;
        if (replica.state !== 'ready' || replica.consecutiveHealthFailures >= options.unhealthyThreshold)
          this.setState(replica, 'unhealthy', cause);
        return;
      }
      replica.consecutiveHealthFailures = 0;
      if (replica.state === 'ready') return;
      if (!options.warmUp) return this.setState(replica, 'ready');
      this.setState(replica, 'warming');
      const headers: Record<string, string> = { 'x-request-id': `warmup-${Date.now().toString(36)}` };
      if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
      // Any answer the engine itself gave (a Harmony parse failure included) proves it ran the request: only a replica fault keeps it out.
      const warm = await replica
        .call('POST', '/v1/chat/completions', { body: WARM_UP_BODY, timeoutMs: options.warmUpTimeoutMs, headers })
        .then((r) => r.status === 200 || classify(r.status, r.body).owner !== 'replica')
        .catch(() => false);
      if (!this.stopped) this.setState(replica, warm ? 'ready' : 'unhealthy', warm ? undefined : 'the warm-up completion failed');
    } finally {
      this.busy.delete(replica);
    }
  }
}
