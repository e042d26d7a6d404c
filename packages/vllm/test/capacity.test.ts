import { describe, expect, it } from 'vitest';
import { parseVllmMetrics } from '../src/health.js';
import { Replica } from '../src/replica.js';

/** A scrape as vLLM's V1 engine renders it (one engine). */
const scrape = (running: number, waiting: number, kv: number) =>
  parseVllmMetrics(
    [
      `vllm:num_requests_running{engine="0",model_name="openai/gpt-oss-20b"} ${running}`,
      `vllm:num_requests_waiting{engine="0",model_name="openai/gpt-oss-20b"} ${waiting}`,
      `vllm:kv_cache_usage_perc{engine="0",model_name="openai/gpt-oss-20b"} ${kv}`,
    ].join('\n'),
  );

describe('replica capacity for admission', () => {
  it('is unknown (unbounded room) until a scrape shows requests waiting; then what ran is the limit', () => {
    const r = new Replica('http://127.0.0.1:1');
    r.learn((r.metrics = scrape(3, 0, 0.2)));
    expect(r.capacity).toBeUndefined();
    expect(r.room).toBe(Infinity);
    r.learn((r.metrics = scrape(8, 5, 0.5)));
    expect(r.capacity).toBe(8);
    r.inFlight = 6;
    expect(r.room).toBe(2);
    // Fewer running while others wait (the KV cache binds): lower; more running than known: higher.
    r.learn((r.metrics = scrape(6, 2, 0.9)));
    expect(r.capacity).toBe(6);
    r.learn((r.metrics = scrape(10, 0, 0.5)));
    expect(r.capacity).toBe(10);
  });

  it('a configured maxNumSeqs wins over what /metrics shows', () => {
    const r = new Replica('http://127.0.0.1:1', undefined, 16);
    r.learn((r.metrics = scrape(4, 9, 0.3)));
    expect(r.capacity).toBe(16);
  });

  it('a full KV cache leaves no room while the gateway runs something there, and one slot when it runs nothing', () => {
    const r = new Replica('http://127.0.0.1:1', undefined, 8);
    r.metrics = scrape(8, 0, 0.99);
    r.inFlight = 2;
    expect(r.room).toBe(0);
    // With nothing of ours there, the gauge is another host's load or stale: holding everything would never end.
    r.inFlight = 0;
    expect(r.room).toBe(8);
  });
});
