import type { PromptParts } from '@tera-gw/router';
import { KvCache } from './kv-cache.js';
import { SimMetrics } from './metrics.js';
import type { Fault, RuntimeConfig, SimulatorOptions } from './options.js';

/** What can change while the simulator runs. */
export interface SimState {
  failRate: number;
  faultRates: Partial<Record<Fault, number>>;
  faultTimes: number;
  healthy: boolean;
  cold: boolean;
  warming: Promise<void> | undefined;
  ttftMs: number;
  itlMs: number;
  /** Streams left to die mid-way, and after how many tokens. */
  death: { tokens: number; mode: 'connection' | 'process'; times: number } | undefined;
}

export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * The replica's engine as the gateway sees it: a running batch of at most `--max-num-seqs`
 * sequences with a FIFO in front of it, a prefix cache, a cold start, and its metrics.
 */
export class Engine {
  readonly metrics: SimMetrics;
  readonly state: SimState;
  private readonly kvCache: KvCache;
  private readonly kvCacheTokens: number;
  private readonly maxNumSeqs: number;
  private readonly prefillUsPerToken: number;
  /** Requests waiting for a place in the running batch, first come first served. */
  private readonly waiters: Array<() => void> = [];
  /** Tokens of the requests in the running batch: what vLLM's KV usage gauge reports. */
  private runningTokens = 0;

  constructor(
    private readonly options: SimulatorOptions,
    model: string,
  ) {
    this.metrics = new SimMetrics(model);
    this.kvCacheTokens = options.kvCacheTokens ?? 262_144;
    this.kvCache = new KvCache(this.kvCacheTokens);
    this.maxNumSeqs = options.maxNumSeqs ?? 256;
    this.prefillUsPerToken = options.prefillUsPerToken ?? 0;
    this.state = {
      failRate: options.failRate ?? 0,
      faultRates: { ...options.faultRates },
      faultTimes: options.faultTimes ?? Infinity,
      healthy: true,
      cold: (options.coldStartMs ?? 0) > 0,
      warming: undefined,
      ttftMs: options.ttftMs ?? 0,
      itlMs: options.itlMs ?? 0,
      death: undefined,
    };
  }

  configure(config: RuntimeConfig): void {
    const state = this.state;
    if (config.failRate !== undefined) state.failRate = config.failRate;
    if (config.faultRates !== undefined) state.faultRates = { ...config.faultRates };
    if (config.faultTimes !== undefined) state.faultTimes = config.faultTimes ?? Infinity;
    if (config.healthy !== undefined) state.healthy = config.healthy;
    if (config.cold) state.cold = (this.options.coldStartMs ?? 0) > 0;
    if (config.ttftMs !== undefined) state.ttftMs = config.ttftMs;
    if (config.itlMs !== undefined) state.itlMs = config.itlMs;
    if (config.dieAfterTokens === null) state.death = undefined;
    else if (config.dieAfterTokens)
      state.death = {
        tokens: config.dieAfterTokens.tokens,
        mode: config.dieAfterTokens.mode ?? 'connection',
        times: config.dieAfterTokens.times ?? 1,
      };
  }

  /** A stream starting now dies after this many tokens, if a death is armed (each stream takes one). */
  takeDeath(): { afterTokens: number; mode: 'connection' | 'process' } | undefined {
    const death = this.state.death;
    if (!death) return undefined;
    if (--death.times <= 0) this.state.death = undefined;
    return { afterTokens: death.tokens, mode: death.mode };
  }

  /** The first request after a (re)start waits out the cold start (CUDA graphs compiling). */
  async warmUp(signal: AbortSignal): Promise<void> {
    const state = this.state;
    if (!state.cold) return;
    state.warming ??= new Promise<void>((resolve) =>
      setTimeout(() => {
        state.cold = false;
        state.warming = undefined;
        resolve();
      }, this.options.coldStartMs ?? 0),
    );
    const warming = state.warming;
    this.metrics.waiting++;
    await Promise.race([warming, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    this.metrics.waiting--;
  }

  /**
   * Takes a place in the running batch (vLLM's --max-num-seqs) or waits in order for one. A place
   * that frees is handed to the next waiter directly, so no newcomer slips in between; a request
   * cancelled while waiting leaves the queue and never runs. False when it was cancelled.
   */
  admit(signal: AbortSignal): Promise<boolean> {
    const metrics = this.metrics;
    if (metrics.running < this.maxNumSeqs && !this.waiters.length) {
      metrics.running++;
      return Promise.resolve(true);
    }
    metrics.waiting++;
    return new Promise<boolean>((resolve) => {
      const wake = () => {
        signal.removeEventListener('abort', cancel);
        resolve(true);
      };
      const cancel = () => {
        const i = this.waiters.indexOf(wake);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        metrics.waiting--;
        resolve(false);
      };
      this.waiters.push(wake);
      signal.addEventListener('abort', cancel, { once: true });
    });
  }

  /**
   * A sequence starts running: its prompt meets the prefix cache (the cached share is not
   * prefilled), its tokens count in the KV usage gauge until `release()`.
   */
  start(prompt: PromptParts, promptTokens: number, completionTokens: number, salt: string | undefined) {
    const metrics = this.metrics;
    metrics.promptTokens += promptTokens;
    const cached = this.kvCache.admit(prompt, promptTokens, salt);
    metrics.prefixQueries += promptTokens;
    metrics.prefixHits += cached;
    // vLLM's KV usage counts the blocks running requests hold; cached blocks no request holds are free (evictable).
    const held = promptTokens + completionTokens;
    this.runningTokens += held;
    metrics.kvCacheUsage = Math.min(1, this.runningTokens / this.kvCacheTokens);
    return {
      cached,
      // Prefill runs over the prompt tokens the prefix cache does not hold.
      prefillMs: ((promptTokens - cached) * this.prefillUsPerToken) / 1000,
      release: () => {
        this.runningTokens -= held;
        metrics.kvCacheUsage = Math.min(1, this.runningTokens / this.kvCacheTokens);
        this.leave();
      },
    };
  }

  private leave(): void {
    const next = this.waiters.shift();
    if (!next) {
      this.metrics.running--;
      return;
    }
    // The place goes to the next waiter as it is: running stays, waiting drops, in one step as vLLM's scheduler does.
    this.metrics.waiting--;
    next();
  }
}
