import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type GatewayOptions } from '@tera-gw/gateway';
import { startSimulator, type SimulatorHandle } from '@tera-gw/vllm-sim';

/**
 * Prompt-cache isolation on the simulator's cache model, which honours `cache_salt` as vLLM
 * does: prefill is paid per prompt token the prefix cache does not hold, so time to answer
 * tells whether another tenant's prompt was cached. One key's own repeated prompt stays fast;
 * another key's right and wrong guesses of a secret in it take the same time.
 */
const model = 'openai/gpt-oss-20b';
const keys = [
  { key: 'sk-tera-tenant-alpha-key', id: 'alpha', team: 'red' },
  { key: 'sk-tera-tenant-bravo-key', id: 'bravo' },
  { key: 'sk-tera-tenant-carol-key', id: 'carol', team: 'red' },
];
const [alpha, bravo, carol] = keys.map((k) => k.key) as [string, string, string];
const secretPrompt = (code: string) =>
  `You are the vault assistant. ${'Follow the procedures of the vault exactly as written. '.repeat(300)} The vault code is ${code}.`;

interface Probe {
  ms: number;
  cached: number;
  prompt: number;
}

let sim: SimulatorHandle;
beforeAll(async () => {
  // 100 µs of prefill per uncached prompt token: a ~3,000-token prompt costs ~0.3 s cold, ~0 cached.
  sim = await startSimulator({ prefillUsPerToken: 100, enablePromptTokensDetails: true });
});
afterAll(() => sim.close());

async function mount(options: GatewayOptions['upstream'] = {}) {
  const gateway: Gateway = createGateway({ replicas: [sim.url], auth: { keys }, upstream: { health: false, ...options } });
  const app = express();
  app.use('/v1', gateway);
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  const ask = async (key: string, system: string, user: string): Promise<Probe> => {
    const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0 });
    const started = performance.now();
    const answer = await client.chat.completions.create({
      model,
      max_tokens: 8,
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: user },
      ],
    });
    return {
      ms: performance.now() - started,
      cached: answer.usage?.prompt_tokens_details?.cached_tokens ?? 0,
      prompt: answer.usage!.prompt_tokens,
    };
  };
  return {
    ask,
    close: async () => {
      await gateway.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The owner caches its prompt; another key probes once (warming its own cache of the common part), then guesses right and wrong. */
async function attack(gw: Awaited<ReturnType<typeof mount>>, run: string) {
  const first = await gw.ask(alpha, secretPrompt(`4721-${run}`), 'first');
  const again = await gw.ask(alpha, secretPrompt(`4721-${run}`), 'again');
  const probe = await gw.ask(bravo, secretPrompt(`0000-${run}`), 'guess');
  const right = await gw.ask(bravo, secretPrompt(`4721-${run}`), 'guess');
  const wrong = await gw.ask(bravo, secretPrompt(`9999-${run}`), 'guess');
  return { first, again, probe, right, wrong };
}

describe('per-key prompt-cache isolation (the default)', () => {
  it("another key cannot tell a right guess of a cached secret from a wrong one; one key's own prompt stays cached", async () => {
    const gw = await mount();
    try {
      const { first, again, probe, right, wrong } = await attack(gw, 'key');
      expect(first.prompt).toBeGreaterThan(2500);
      // The owner's repeat hits its own cache.
      expect(again.cached).toBeGreaterThan(again.prompt * 0.9);
      expect(again.ms).toBeLessThan(first.ms / 2);
      // The other tenant's first contact finds nothing of the owner's prompt: it pays the whole prefill.
      expect(probe.cached).toBe(0);
      expect(probe.ms).toBeGreaterThan(again.ms * 2);
      // Its guesses hit only its own cache of the common part: a right guess no more than a wrong one
      // (the prefill time follows the uncached tokens, so equal counts are equal times; the few
      // milliseconds left are too small to compare on a shared machine).
      expect(right.cached).toBe(wrong.cached);
      expect(right.prompt - right.cached).toBe(wrong.prompt - wrong.cached);
      // Keys of one team do not share under 'key' either.
      expect((await gw.ask(carol, secretPrompt('4721-key'), 'team')).cached).toBe(0);
    } finally {
      await gw.close();
    }
  });
});

describe("cacheIsolation: 'team' and 'none'", () => {
  it("'team': keys of one team share their cached prompt; a key outside it does not", async () => {
    const gw = await mount({ cacheIsolation: 'team', cacheSaltSecret: 'a-shared-secret-for-every-host' });
    try {
      await gw.ask(alpha, secretPrompt('team-5'), 'one');
      expect((await gw.ask(carol, secretPrompt('team-5'), 'two')).cached).toBeGreaterThan(2500);
      expect((await gw.ask(bravo, secretPrompt('team-5'), 'three')).cached).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it("'none': the right guess reuses the owner's cache (the leak the default closes, so the tests above mean something)", async () => {
    const gw = await mount({ cacheIsolation: 'none' });
    try {
      const { probe, right, wrong } = await attack(gw, 'none');
      expect(probe.cached).toBeGreaterThan(2500);
      expect(right.cached).toBeGreaterThan(wrong.cached);
    } finally {
      await gw.close();
    }
  });
});
