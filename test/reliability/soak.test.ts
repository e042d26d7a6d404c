import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '@tera-gw/rate-limit';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

/**
 * Sustained mixed traffic (streaming and not, tools, injected upstream errors, client aborts)
 * for SOAK_SECONDS (default 20), bounded and on loopback. Nothing lost or counted twice: every
 * request that reached a replica has exactly one usage record; no unexpected 5xx; the heap
 * after a collection grows by less than 2 KB per request between the two halves of the run;
 * leases and open handles return to the baseline.
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-soak-key-0001';
const seconds = Number(process.env.SOAK_SECONDS ?? 20);
const concurrency = 16;
const store = new MemoryStore();
// Only what the checks read: whole records would grow this process's heap per request and hide a leak.
const usage: Array<Pick<UsageRecord, 'requestId' | 'status' | 'aborted'>> = [];
let sims: SimProcess[];
let gateway: Mounted['gateway'];
let url: string;
let close: () => Promise<void>;

beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '1']), spawnSim(['--itl-ms', '1'])]);
  const mounted = await mountGateway('express', {
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key: KEY, id: 'soak', concurrency: 1000, tokensPerSecond: 1e9 }] },
    rateLimit: { store },
    onUsage: (r) => void usage.push({ requestId: r.requestId, status: r.status, aborted: r.aborted }),
    upstream: {
      health: { intervalMs: 500 },
      forwardHeaders: ['x-sim-fault'],
      breaker: { consecutiveFailures: 1000, volumeThreshold: 100_000 },
    },
  });
  gateway = mounted.gateway;
  url = `${mounted.url}/v1/chat/completions`;
  close = () => mounted.close();
  await gateway.ready();
});
afterAll(async () => {
  await close();
  await Promise.all(sims.map((s) => s.kill()));
});

const tools = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
    },
  },
];

describe('soak', () => {
  it(
    `mixed traffic for ${seconds}s: no unexpected 5xx, nothing lost or double-counted, no heap growth per request`,
    { timeout: (seconds + 60) * 1000 },
    async () => {
      const counts = { requests: 0, ok: 0, injected: 0, injected5xx: 0, unexpected5xx: 0, aborted: 0, streams: 0 };
      const gc = (globalThis as { gc?: () => void }).gc;
      const heap = () => {
        gc?.();
        return process.memoryUsage().heapUsed;
      };
      let n = 0;
      const worker = async (end: number) => {
        while (Date.now() < end) {
          const i = n++;
          const stream = i % 2 === 0;
          const inject = i % 20 === 7;
          const abort = i % 20 === 13;
          const body: Record<string, unknown> = {
            model,
            stream,
            messages: [{ role: 'user', content: i % 3 === 0 ? 'weather in Paris?' : `question ${i}` }],
          };
          if (i % 3 === 0) body.tools = tools;
          const controller = new AbortController();
          counts.requests++;
          if (stream) counts.streams++;
          try {
            const res = await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...(inject ? { 'x-sim-fault': '500' } : {}) },
              body: JSON.stringify(body),
              signal: controller.signal,
            });
            if (abort) {
              controller.abort();
              counts.aborted++;
              await res.arrayBuffer().catch(() => undefined);
              continue;
            }
            const text = await res.text();
            if (inject) {
              counts.injected++;
              if (res.status >= 500) counts.injected5xx++;
            } else if (res.status >= 500 || (stream && !text.endsWith('data: [DONE]\n\n'))) {
              counts.unexpected5xx++;
            } else if (res.status === 200) counts.ok++;
          } catch {
            if (!abort) counts.unexpected5xx++;
          }
        }
      };
      const baselineHeap = heap();
      const phase = async (ms: number) => {
        const end = Date.now() + ms;
        await Promise.all(Array.from({ length: concurrency }, () => worker(end)));
        // Quiescent: streams closed, cleanups (deferred a tick after aborts) run.
        await new Promise((r) => setTimeout(r, 300));
        return { heap: heap(), requests: counts.requests };
      };
      // The first half warms every cache (tokenizer, keep-alive sockets, JIT); the second must not grow per request.
      const first = await phase((seconds * 1000) / 2);
      const second = await phase((seconds * 1000) / 2);
      const perRequest = (second.heap - first.heap) / Math.max(1, second.requests - first.requests);
      console.log(
        `soak: ${counts.requests} requests in ${seconds}s (${counts.streams} streamed, ${counts.injected} with an injected upstream 500, ${counts.aborted} aborted); ` +
          `unexpected 5xx ${counts.unexpected5xx}; usage records ${usage.length}; heap after collection ${(baselineHeap / 1e6).toFixed(1)} -> ` +
          `${(first.heap / 1e6).toFixed(1)} -> ${(second.heap / 1e6).toFixed(1)} MB, ${perRequest.toFixed(0)} B per request in the second half`,
      );
      expect(perRequest).toBeLessThan(2048);
      expect(counts.unexpected5xx).toBe(0);
      expect(counts.injected5xx).toBe(counts.injected);
      expect(store.inFlight('soak')).toBe(0);
      expect(gateway.upstream.replicas().every((r) => r.inFlight === 0)).toBe(true);
      // Exactly one usage record per request that reached a replica, never two.
      const ids = usage.map((u) => u.requestId);
      expect(new Set(ids).size).toBe(ids.length);
      // Every answer the client read in full has its record; an abort may come after the gateway had already finished.
      const completed = usage.filter((u) => u.status === 200 && !u.aborted).length;
      expect(completed).toBeGreaterThanOrEqual(counts.ok);
      expect(completed).toBeLessThanOrEqual(counts.ok + counts.aborted);
      expect(usage.length).toBeLessThanOrEqual(counts.requests);
      expect(second.heap - baselineHeap).toBeLessThan(32 * 1024 * 1024);
    },
  );
});
