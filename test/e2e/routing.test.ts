import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord } from '@tera-gw/telemetry';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-routing-key';
const system = {
  role: 'system' as const,
  content: 'You are the support agent of a large retailer. Follow the policies below. '.repeat(100),
};

let sims: SimProcess[];
beforeAll(async () => {
  sims = await Promise.all(Array.from({ length: 4 }, () => spawnSim(['--enable-prompt-tokens-details', '--itl-ms', '1'])));
});
afterAll(async () => {
  await Promise.all(sims.map((s) => s.kill()));
});

async function gatewayOver(urls: string[], usage: Map<string, UsageRecord>): Promise<Mounted> {
  const gw = await mountGateway('express', {
    replicas: urls,
    auth: { keys: [{ key: KEY, concurrency: 1000, tokensPerSecond: 1e9 }] },
    upstream: { routing: 'cache-aware', health: { intervalMs: 100, metricsIntervalMs: 200 } },
    onUsage: (r) => void usage.set(r.requestId, r),
  });
  await gw.gateway.ready();
  for (let i = 0; i < 100 && gw.gateway.upstream.replicas().some((r) => r.state !== 'ready'); i++)
    await new Promise((r) => setTimeout(r, 50));
  return gw;
}

type Message = { role: 'system' | 'user' | 'assistant'; content: string };

/** Runs `conversations` multi-turn conversations, `parallel` at a time; returns the replica of each turn and the cached tokens each turn reported. */
async function converse(
  gw: Mounted,
  usage: Map<string, UsageRecord>,
  conversations: number,
  turns: number,
  parallel: number,
  beforeTurn?: (turn: number) => Promise<void>,
) {
  const replicas: string[][] = Array.from({ length: conversations }, () => []);
  const cached: number[][] = Array.from({ length: conversations }, () => []);
  const histories: Message[][] = Array.from({ length: conversations }, (_, c) => [
    system,
    { role: 'user', content: `Customer ${c} asks about order ${c * 7919}.` },
  ]);
  for (let t = 0; t < turns; t++) {
    await beforeTurn?.(t);
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        for (let c = next++; c < conversations; c = next++) {
          const res = await fetch(`${gw.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
            body: JSON.stringify({ model, messages: histories[c], max_tokens: 40 }),
          });
          expect(res.status).toBe(200);
          const body = (await res.json()) as {
            choices: Array<{ message: { content: string } }>;
            usage: { prompt_tokens_details: { cached_tokens: number } | null };
          };
          replicas[c]!.push(usage.get(res.headers.get('x-tera-request-id')!)!.replica!);
          cached[c]!.push(body.usage.prompt_tokens_details?.cached_tokens ?? -1);
          histories[c]!.push(
            { role: 'assistant', content: body.choices[0]!.message.content },
            { role: 'user', content: `Follow-up ${t} from customer ${c}.` },
          );
        }
      }),
    );
  }
  return { replicas, cached };
}

describe('cache-aware routing against simulator replicas', () => {
  it('follow-up turns reach the replica of their previous turn; conversations spread; cached_tokens reach the caller', async () => {
    const usage = new Map<string, UsageRecord>();
    const gw = await gatewayOver(
      sims.map((s) => s.url),
      usage,
    );
    try {
      const { replicas, cached } = await converse(gw, usage, 32, 4, 8);
      let same = 0;
      let total = 0;
      for (const r of replicas) {
        for (let t = 1; t < r.length; t++) {
          total++;
          if (r[t] === r[t - 1]) same++;
        }
      }
      expect(same / total).toBeGreaterThanOrEqual(0.95);
      const shares = sims.map((s) => replicas.filter((r) => r[0] === s.url).length);
      for (const share of shares) expect(share).toBeLessThanOrEqual(1.5 * (32 / 4));
      // From the second turn on, the replica holds the conversation: most of the prompt is cached.
      for (const c of cached) for (let t = 1; t < c.length; t++) expect(c[t]).toBeGreaterThan(0);
    } finally {
      await gw.close();
    }
  });

  it('two gateway instances send the same prompt_cache_key to the same replica', async () => {
    const usageA = new Map<string, UsageRecord>();
    const usageB = new Map<string, UsageRecord>();
    const [a, b] = await Promise.all([
      gatewayOver(
        sims.map((s) => s.url),
        usageA,
      ),
      gatewayOver(
        [...sims].reverse().map((s) => s.url),
        usageB,
      ),
    ]);
    try {
      const seen = new Set<string>();
      for (let k = 0; k < 16; k++) {
        const body = JSON.stringify({
          model,
          prompt_cache_key: `session-${k}`,
          messages: [{ role: 'user', content: `hello ${k}` }],
          max_tokens: 5,
        });
        const send = (gw: Mounted) =>
          fetch(`${gw.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
            body,
          });
        const [ra, rb] = await Promise.all([send(a), send(b)]);
        const replicaA = usageA.get(ra.headers.get('x-tera-request-id')!)!.replica;
        const replicaB = usageB.get(rb.headers.get('x-tera-request-id')!)!.replica;
        expect(replicaA).toBe(replicaB);
        seen.add(replicaA!);
      }
      expect(seen.size).toBeGreaterThan(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a replica that dies mid-conversation hands its conversations to others, which keep them', async () => {
    const extra = await spawnSim(['--enable-prompt-tokens-details']);
    const usage = new Map<string, UsageRecord>();
    const pool = [...sims.slice(0, 2).map((s) => s.url), extra.url];
    const gw = await gatewayOver(pool, usage);
    try {
      const { replicas } = await converse(gw, usage, 18, 5, 6, async (turn) => {
        if (turn === 2) {
          await extra.kill();
          for (let i = 0; i < 100 && gw.gateway.upstream.replicas()[2]!.state === 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
        }
      });
      const moved = replicas.filter((r) => r[1] === extra.url);
      expect(moved.length).toBeGreaterThan(0);
      for (const r of moved) expect(r.slice(2)).not.toContain(extra.url);
      // They stay where they moved. The bounded-load ceiling may shed one under a burst on a busy machine
      // (seen once in a CI run under load); more than a quarter would mean stickiness is lost.
      const unstable = moved.filter((r) => r[3] !== r[2] || r[4] !== r[3]);
      expect(unstable.length).toBeLessThanOrEqual(Math.floor(moved.length / 4));
    } finally {
      await gw.close();
    }
  });

  it('a replica without /metrics still serves', async () => {
    // A replica that answers but exports no /metrics.
    const bare = await startCaptureUpstream();
    const bareUrl = bare.url;
    const usage = new Map<string, UsageRecord>();
    const gw = await gatewayOver([sims[0]!.url, bareUrl], usage);
    try {
      const served = new Set<string>();
      for (let k = 0; k < 24; k++) {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
          body: JSON.stringify({ model, prompt_cache_key: `k${k}`, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
        });
        expect(res.status).toBe(200);
        served.add(usage.get(res.headers.get('x-tera-request-id')!)!.replica!);
      }
      expect(served).toContain(bareUrl);
    } finally {
      await gw.close();
      await bare.close();
    }
  });

  it('one message of odd length past the hashing scratch buffer is served, and routing still tells prompts apart after it', async () => {
    const usage = new Map<string, UsageRecord>();
    const gw = await gatewayOver([sims[0]!.url, sims[1]!.url], usage);
    try {
      const ask = (content: string) =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
          body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 3 }),
        });
      const huge = await ask('word '.repeat(40_000) + 'x');
      expect(huge.status).toBe(200);
      // Prompts that share nothing: no replica reports a cached prefix for them (a stale hash would make them all one prompt).
      for (let c = 0; c < 12; c++) {
        const res = await ask(`${c} ${'abcdefghijklmnopqrstuvwxyz'.slice(c)} is question ${c}, ${'why '.repeat(40 + c)}`);
        expect(res.status).toBe(200);
        expect(usage.get(res.headers.get('x-tera-request-id')!)!.cachedTokens ?? 0).toBe(0);
      }
    } finally {
      await gw.close();
    }
  });
});
