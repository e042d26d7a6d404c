import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { createRouter, leastRequest, prefixBlocks, type ReplicaView, type RouteRequest } from '../src/index.js';
// The simulator's seeded generator: the same picks on every run.
import { createRandom as mulberry } from '../../vllm-sim/src/prng.js';

type R = { id: string; inFlight: number; metrics?: { waiting?: number; kvCacheUsage?: number } };
const removed = new Set<string>();
const replicas = (n: number): R[] => Array.from({ length: n }, (_, i) => ({ id: `http://10.0.0.${i + 1}:8000`, inFlight: 0 }));
const system = { role: 'system', content: 'You are a careful assistant. '.repeat(280) }; // about 2,000 tokens shared by everyone

/**
 * Multi-turn conversations through one router, interleaved, with `concurrency` requests in
 * flight at a time (each stays in flight for the next `concurrency - 1` picks): per-turn choices.
 */
function converse(
  router: ReturnType<typeof createRouter>,
  pool: R[],
  conversations: number,
  turns: number,
  onTurn?: (turn: number) => void,
  concurrency = 16,
) {
  const histories = Array.from({ length: conversations }, (_, c) => [
    system,
    { role: 'user', content: `Conversation ${c}: tell me about topic ${c * 7919}.` },
  ]);
  const picks: string[][] = Array.from({ length: conversations }, () => []);
  const inFlight: R[] = [];
  for (let t = 0; t < turns; t++) {
    onTurn?.(t);
    for (let c = 0; c < conversations; c++) {
      const request: RouteRequest = { prompt: { messages: histories[c]! } };
      const live = pool.filter((r) => !removed.has(r.id));
      const choice = router.pick(request, live)!;
      router.record!(request, choice);
      const r = pool.find((x) => x.id === choice.id)!;
      r.inFlight++;
      inFlight.push(r);
      if (inFlight.length >= concurrency) inFlight.shift()!.inFlight--;
      picks[c]!.push(choice.id);
      histories[c]!.push(
        { role: 'assistant', content: `Answer ${t} for ${c}: ${'detail '.repeat(40)}` },
        { role: 'user', content: `Follow-up ${t} of ${c}?` },
      );
    }
  }
  return picks;
}

describe('cache-aware routing', () => {
  it('follow-up turns stay on the replica of the previous turn; conversations spread', () => {
    const pool = replicas(4);
    const picks = converse(createRouter({ random: mulberry(1) }), pool, 64, 8);
    let same = 0;
    let followUps = 0;
    for (const p of picks) {
      for (let t = 1; t < p.length; t++) {
        followUps++;
        if (p[t] === p[t - 1]) same++;
      }
    }
    expect(same / followUps).toBeGreaterThanOrEqual(0.95);
    const shares = pool.map((r) => picks.filter((p) => p[0] === r.id).length);
    const mean = 64 / 4;
    for (const s of shares) expect(s).toBeLessThanOrEqual(1.5 * mean);
  });

  it('a prompt_cache_key picks the same replica on two independent gateway hosts, spread by rendezvous hashing', () => {
    const a = createRouter();
    const b = createRouter();
    const pool = replicas(4);
    const counts = new Map<string, number>();
    for (let k = 0; k < 400; k++) {
      const key = `conversation-${k}`;
      const ra = a.pick({ promptCacheKey: key }, pool)!;
      const rb = b.pick({ promptCacheKey: key }, [...pool].reverse())!;
      expect(ra.id).toBe(rb.id);
      counts.set(ra.id, (counts.get(ra.id) ?? 0) + 1);
    }
    for (const n of counts.values()) expect(n).toBeLessThanOrEqual(1.5 * 100);
  });

  it('bounded load: a key whose replica is far above the mean spills to its next choice', () => {
    const router = createRouter();
    const pool = replicas(3);
    const home = router.pick({ promptCacheKey: 'hot' }, pool)!;
    const loaded = pool.map((r) => (r.id === home.id ? { ...r, inFlight: 20 } : r));
    const spilled = router.pick({ promptCacheKey: 'hot' }, loaded)!;
    expect(spilled.id).not.toBe(home.id);
  });

  it('a replica with a growing waiting queue receives fewer new conversations', () => {
    const pool = replicas(3);
    pool[0]!.metrics = { waiting: 12, kvCacheUsage: 0.9 };
    const router = createRouter({ random: mulberry(2) });
    const firsts = converse(router, pool, 60, 1).map((p) => p[0]);
    const onBusy = firsts.filter((id) => id === pool[0]!.id).length;
    expect(onBusy).toBeLessThan(60 / 3 / 2);
  });

  it('a replica that leaves: its conversations move, then stick to their new replica', () => {
    const pool = replicas(3);
    const router = createRouter({ random: mulberry(3) });
    const picks = converse(router, pool, 30, 6, (turn) => {
      if (turn === 3) removed.add(pool[0]!.id);
    });
    removed.clear();
    const moved = picks.filter((p) => p[2] === pool[0]!.id);
    expect(moved.length).toBeGreaterThan(0);
    let kept = 0;
    let total = 0;
    for (const p of moved) {
      expect(p.slice(3)).not.toContain(pool[0]!.id);
      for (let t = 4; t < p.length; t++) {
        total++;
        if (p[t] === p[t - 1]) kept++;
      }
    }
    expect(kept / total).toBeGreaterThanOrEqual(0.9);
  });

  it('a replica without /metrics is scored on in-flight alone, never dropped', () => {
    const pool: ReplicaView[] = [
      { id: 'a', inFlight: 0, metrics: { waiting: 0, kvCacheUsage: 0.2 } },
      { id: 'b', inFlight: 0 },
    ];
    const seen = new Set<string>();
    const router = createRouter();
    for (let i = 0; i < 50; i++)
      seen.add(router.pick({ prompt: { messages: [{ role: 'user', content: `q ${i} ${'x'.repeat(200)}` }] } }, pool)!.id);
    expect(seen.has('b')).toBe(true);
  });
});

describe('partitions (cache_salt)', () => {
  it('the same prompt hashes to other blocks in another partition, and the same in the same one', () => {
    const prompt = { messages: [system, { role: 'user', content: 'hello' }] };
    const plain = prefixBlocks(prompt, 128, 256);
    const a = prefixBlocks(prompt, 128, 256, 'salt-a');
    expect(prefixBlocks(prompt, 128, 256, 'salt-a')).toEqual(a);
    const b = prefixBlocks(prompt, 128, 256, 'salt-b');
    expect(a.length).toBe(plain.length);
    for (let i = 0; i < a.length; i++) {
      expect(a[i]).not.toBe(b[i]);
      expect(a[i]).not.toBe(plain[i]);
    }
  });

  it("a tenant's prompt is not steered to the replica holding another tenant's copy of it", () => {
    const router = createRouter({ random: mulberry(3) });
    const pool = replicas(4);
    const messages = [system, { role: 'user', content: 'the shared question' }];
    const owner: RouteRequest = { prompt: { messages }, partition: 'tenant-a' };
    const home = router.pick(owner, pool)!;
    router.record!(owner, home);
    // The owner comes back to its replica; another tenant's identical prompt scores no prefix anywhere.
    expect(router.pick({ prompt: { messages }, partition: 'tenant-a' }, pool)!.id).toBe(home.id);
    const other: RouteRequest = { prompt: { messages }, partition: 'tenant-b' };
    router.pick(other, pool);
    expect([...other.matched!.values()].every((m) => m === 0)).toBe(true);
  });
});

describe('pieces', () => {
  it('prefix blocks are chained: equal prefixes, equal hashes; a change affects every later block', () => {
    const a = prefixBlocks({ messages: [{ role: 'user', content: 'x'.repeat(640) }] }, 64, 256);
    const b = prefixBlocks({ messages: [{ role: 'user', content: `${'x'.repeat(300)}y${'x'.repeat(339)}` }] }, 64, 256);
    expect(a.slice(0, 4)).toEqual(b.slice(0, 4));
    for (let i = 4; i < a.length; i++) expect(a[i]).not.toBe(b[i]);
    // A message ends a block: the next turn's prompt starts with this turn's blocks.
    const turn1 = prefixBlocks({ messages: [{ role: 'user', content: 'short question' }] }, 64, 256);
    const turn2 = prefixBlocks(
      {
        messages: [
          { role: 'user', content: 'short question' },
          { role: 'assistant', content: 'answer' },
        ],
      },
      64,
      256,
    );
    expect(turn2.slice(0, turn1.length)).toEqual(turn1);
    expect(prefixBlocks({ messages: [{ role: 'user', content: 'x'.repeat(100_000) }] }, 64, 256)).toHaveLength(256);
  });

  it('least-request picks the fewest in flight, ties at random', () => {
    expect(
      leastRequest([
        { id: 'a', inFlight: 2 },
        { id: 'b', inFlight: 1 },
      ])!.id,
    ).toBe('b');
    // Three tied at 1 in flight, one busier: each tied replica is chosen about a third of the time, the busier never.
    const tied = [
      { id: 'a', inFlight: 1 },
      { id: 'busy', inFlight: 5 },
      { id: 'b', inFlight: 1 },
      { id: 'c', inFlight: 1 },
    ];
    const random = mulberry(7);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 3000; i++) {
      const id = leastRequest(tied, random)!.id;
      counts[id] = (counts[id] ?? 0) + 1;
    }
    expect(counts.busy).toBeUndefined();
    for (const id of ['a', 'b', 'c']) {
      expect(counts[id]).toBeGreaterThan(850);
      expect(counts[id]).toBeLessThan(1150);
    }
  });
});

describe('prefix blocks of resent history', () => {
  const long = (tag: string) => `${tag}: ${'the tool returned rows of the warehouse export; '.repeat(60)}`;

  it('a long message hashed before gives the same chain from its remembered blocks, only where the chain before it is the same', () => {
    const history = [
      { role: 'system', content: long('system') },
      { role: 'tool', content: long('result 1') },
    ];
    const first = prefixBlocks({ messages: history }, 128, 1024);
    // The next turn resends the history as new strings (a fresh JSON.parse), plus a new message.
    const resent = JSON.parse(JSON.stringify(history)) as typeof history;
    const next = prefixBlocks({ messages: [...resent, { role: 'tool', content: long('result 2') }] }, 128, 1024);
    expect(next.slice(0, first.length)).toEqual(first);
    expect(next.length).toBeGreaterThan(first.length);
    // The same text after a different prefix, or in another partition, chains differently.
    const moved = prefixBlocks({ messages: [{ role: 'system', content: 'other' }, ...resent] }, 128, 1024);
    expect(moved.slice(1)).not.toContain(first[first.length - 1]);
    const salted = prefixBlocks({ messages: resent }, 128, 1024, 'tenant-b');
    expect(salted.some((b) => first.includes(b))).toBe(false);
    // A smaller block budget cuts the remembered chain where a fresh hash would stop.
    expect(prefixBlocks({ messages: resent }, 128, 5)).toEqual(first.slice(0, 5));
    // A text first cut by a small budget is hashed again, in full, under a larger one.
    const cutFirst = prefixBlocks({ messages: [{ role: 'tool', content: long('cut') }] }, 128, 3);
    const full = prefixBlocks({ messages: [{ role: 'tool', content: long('cut') }] }, 128, 1024);
    expect(cutFirst).toHaveLength(3);
    expect(full.length).toBeGreaterThan(3);
    expect(full.slice(0, 3)).toEqual(cutFirst);
    // Other block sizes keep their own chains.
    expect(prefixBlocks({ messages: resent }, 64, 1024)).not.toEqual(first);
  });
});

describe('prefix blocks at every length', () => {
  // An independent oracle: the UTF-8 bytes, zero-padded to whole little-endian words, chained block by block.
  function reference(texts: string[], blockChars: number): number[] {
    const blockWords = Math.max(1, blockChars >> 2);
    const out: number[] = [];
    let hash = 0;
    for (const text of texts) {
      const bytes = new TextEncoder().encode(text);
      const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
      padded.set(bytes);
      const view = new DataView(padded.buffer);
      const count = padded.length / 4;
      for (let at = 0; at < count; at += blockWords) {
        let h = hash ^ 0x9e3779b9;
        for (let i = at; i < Math.min(count, at + blockWords); i++) {
          h = Math.imul(h ^ view.getInt32(i * 4, true), 0x85ebca6b);
          h ^= h >>> 15;
        }
        out.push((hash = (h ^ (h >>> 13)) >>> 0));
      }
    }
    return out;
  }
  const asMessage = (content: string) => `\u0000user\u0000${content}`;

  it('in a fresh process, a first long message of odd length hashes without throwing, and later prompts still differ', async () => {
    // The scratch buffer is module state: a fresh copy of the module meets the first growth.
    vi.resetModules();
    const fresh = await import('../src/prefix.js');
    const huge = 'a'.repeat(200_001);
    expect(fresh.prefixBlocks({ messages: [{ role: 'user', content: huge }] }, 64, 1 << 20)).toEqual(reference([asMessage(huge)], 64));
    const one = fresh.prefixBlocks({ messages: [{ role: 'user', content: 'What is the capital of France?' }] }, 64, 64);
    const two = fresh.prefixBlocks({ messages: [{ role: 'user', content: 'Write a haiku about the sea.' }] }, 64, 64);
    expect(one).not.toEqual(two);
    expect(one).toEqual(reference([asMessage('What is the capital of France?')], 64));
  });

  it('equals the oracle for any length from 0 to 100k characters, odd byte counts and multibyte text included', async () => {
    vi.resetModules();
    const fresh = await import('../src/prefix.js');
    const alphabet = ['a', 'é', '€', '😀', ' ', '\n', 'z'];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 0, max: alphabet.length - 1 }),
        fc.boolean(),
        (length, pick, mixed) => {
          const unit = alphabet[pick]!;
          let text = unit.repeat(Math.ceil(length / unit.length)).slice(0, length);
          if (mixed && length > 2) text = `x${text.slice(1, -1)}y`;
          // Slicing may split a surrogate pair: TextEncoder then writes U+FFFD, as the router must.
          expect(fresh.prefixBlocks({ messages: [{ role: 'user', content: text }] }, 64, 1 << 20)).toEqual(
            reference([asMessage(text)], 64),
          );
        },
      ),
      {
        numRuns: 60,
        seed: 20261206,
        examples: [
          [21_845, 0, false],
          [21_846, 0, false],
          [200_001 - 200_000, 0, false],
          [99_999, 3, true],
        ],
      },
    );
  });
});

describe('prefix blocks under a block budget', () => {
  it('a long message gives the same first blocks as the full hash, whatever character the budget cuts at', () => {
    for (const unit of ['a', 'é', '€', '😀']) {
      const text = unit.repeat(40_000);
      const full = prefixBlocks({ messages: [{ role: 'user', content: text }] }, 64, 1 << 20);
      for (const budget of [1, 7, 64, 255])
        expect(prefixBlocks({ messages: [{ role: 'user', content: `${text}` }] }, 64, budget)).toEqual(full.slice(0, budget));
    }
  });
});
