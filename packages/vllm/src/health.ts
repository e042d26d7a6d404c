import type { Replica } from './replica.js';

export interface HealthOptions {
  /** Between active checks of each replica. @defaultValue 5000 ms */
  intervalMs: number;
  /** Per check. @defaultValue 2000 ms */
  timeoutMs: number;
  /** Consecutive failed checks that take a ready replica out of rotation. @defaultValue 2 */
  unhealthyThreshold: number;
  /** Send one tiny completion before a replica takes traffic (vLLM's first request compiles CUDA graphs). @defaultValue true */
  warmUp: boolean;
  /** How long the warm-up completion may take. @defaultValue 60000 ms */
  warmUpTimeoutMs: number;
}

const DEFAULTS: HealthOptions = { intervalMs: 5000, timeoutMs: 2000, unhealthyThreshold: 2, warmUp: true, warmUpTimeoutMs: 60_000 };

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
  private readonly busy = new Set<Replica>();
  private readonly waiters = new Set<() => void>();
  private stopped = false;

  constructor(
    private readonly replicas: readonly Replica[],
    options: Partial<HealthOptions> | false,
    private readonly apiKey: string | undefined,
    private readonly onChange: (replica: Replica) => void,
  ) {
    this.options = options === false ? false : { ...DEFAULTS, ...options };
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
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
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

  private setState(replica: Replica, state: Replica['state']): void {
    if (replica.state === state) return;
    replica.state = state;
    this.onChange(replica);
    for (const w of [...this.waiters]) w();
  }

  private checkAll(): void {
    for (const r of this.replicas) if (!this.busy.has(r)) void this.check(r);
  }

  private async check(replica: Replica): Promise<void> {
    const options = this.options;
    if (options === false || this.stopped) return;
    this.busy.add(replica);
    try {
      const healthy = await replica
        .call('GET', '/health', { timeoutMs: options.timeoutMs })
        .then((r) => r.status === 200)
        .catch(() => false);
      if (this.stopped) return;
      if (!healthy) {
        replica.consecutiveHealthFailures++;
        if (replica.state !== 'ready' || replica.consecutiveHealthFailures >= options.unhealthyThreshold)
          this.setState(replica, 'unhealthy');
        return;
      }
      replica.consecutiveHealthFailures = 0;
      if (replica.state === 'ready') return;
      if (!options.warmUp) return this.setState(replica, 'ready');
      this.setState(replica, 'warming');
      const headers: Record<string, string> = { 'x-request-id': `warmup-${Date.now().toString(36)}` };
      if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
      const warm = await replica
        .call('POST', '/v1/chat/completions', { body: WARM_UP_BODY, timeoutMs: options.warmUpTimeoutMs, headers })
        .then((r) => r.status === 200)
        .catch(() => false);
      if (!this.stopped) this.setState(replica, warm ? 'ready' : 'unhealthy');
    } finally {
      this.busy.delete(replica);
    }
  }
}
