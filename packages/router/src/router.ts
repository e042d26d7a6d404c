import { parseOptions } from '@tera-gw/core';
import { routerOptionsSchema, type RouterOptions } from './options.js';
import { PrefixIndex, prefixBlocks, type PromptParts } from './prefix.js';

/** What the router sees of a replica: nothing it would have to fetch itself. */
export interface ReplicaView {
  readonly id: string;
  /** Requests this gateway has in flight to the replica. */
  readonly inFlight: number;
  /** Last values scraped from the replica's `/metrics`; absent when it exports none. */
  readonly metrics?: { readonly waiting?: number; readonly kvCacheUsage?: number } | undefined;
}

/** What the router may look at in a request. It caches its own work on the object across retries. */
export interface RouteRequest {
  readonly promptCacheKey?: string | undefined;
  readonly prompt?: PromptParts | undefined;
  /**
   * The tenant's cache partition (the request's `cache_salt`): prefixes are indexed per partition,
   * as vLLM caches them, so routing stays cache-aware within a tenant and learns nothing across.
   */
  readonly partition?: string | undefined;
  /** Filled by the router on first use. */
  blocks?: number[];
  /** Leading blocks each scored replica already held, so `record` writes only the new ones. */
  matched?: Map<string, number>;
}

export interface Router {
  /** Picks among `candidates` (already filtered to warm, healthy, breaker-allowed replicas); undefined when empty. */
  pick<R extends ReplicaView>(request: RouteRequest, candidates: readonly R[]): R | undefined;
  /** The request went to `replica`: its prompt blocks are now in that replica's cache. */
  record?(request: RouteRequest, replica: ReplicaView): void;
}

/** The candidate with the fewest requests in flight; ties broken at random so equal replicas share load. */
export function leastRequest<R extends ReplicaView>(candidates: readonly R[], random: () => number = Math.random): R | undefined {
  let best: R | undefined;
  let ties = 0;
  for (const c of candidates) {
    if (!best || c.inFlight < best.inFlight) {
      best = c;
      ties = 1;
    } else if (c.inFlight === best.inFlight) {
      // Reservoir sampling over the tied candidates: each is chosen with equal chance.
      ties++;
      if (random() * ties < 1) best = c;
    }
  }
  return best;
}

/** 32-bit mix of a string, for rendezvous hashing: every host computes the same weights. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Replicas at or under the bounded-load ceiling; all of them if none is. */
function underCeiling<R extends ReplicaView>(candidates: readonly R[], epsilon: number): readonly R[] {
  if (candidates.length < 2) return candidates;
  let total = 0;
  for (const c of candidates) total += c.inFlight + (c.metrics?.waiting ?? 0);
  const ceiling = (1 + epsilon) * (total / candidates.length) + 1;
  const ok = candidates.filter((c) => c.inFlight + (c.metrics?.waiting ?? 0) <= ceiling);
  return ok.length ? ok : candidates;
}

/**
 * Picks a replica. `cache-aware`: an affinity key (`prompt_cache_key` or `affinityKey`) goes to
 * its rendezvous-hash replica, the same from every gateway host, unless that one is over the
 * bounded-load ceiling; otherwise the weighted score of matched prefix, load and free KV cache,
 * with the same ceiling. Pure: it keeps a per-replica index of the prefixes it sent, nothing else.
 */
export function createRouter(input: RouterOptions = {}): Router {
  const options = parseOptions(routerOptionsSchema, input, 'createRouter()');
  const { random, weights, blockChars, maxBlocks, epsilon } = options;
  if (options.strategy === 'least-request') return { pick: (_request, candidates) => leastRequest(candidates, random) };
  const capacity = options.indexCapacity;
  const indexes = new Map<string, PrefixIndex>();
  const indexOf = (id: string) => {
    let index = indexes.get(id);
    if (!index) {
      index = new PrefixIndex(capacity);
      indexes.set(id, index);
    }
    return index;
  };
  const blocksOf = (request: RouteRequest) =>
    (request.blocks ??= request.prompt ? prefixBlocks(request.prompt, blockChars, maxBlocks, request.partition) : []);
  // Which block each block was followed by: a block followed by different continuations ends a
  // prefix that several conversations share (an agent's system prompt). Matching that part is
  // worth one prefill per replica, not a conversation's stickiness, so it scores lightly.
  const continuations = new Map<number, { next: number; shared: boolean }>();
  const sharedDepth = (blocks: readonly number[]): number => {
    let depth = 0;
    for (let i = 0; i < blocks.length - 1; i++) {
      const seen = continuations.get(blocks[i]!);
      if (!seen) break;
      if (seen.shared || seen.next !== blocks[i + 1]) depth = i + 1;
    }
    return depth;
  };

  return {
    pick(request, candidates) {
      if (candidates.length <= 1) return candidates[0];
      const pool = underCeiling(candidates, epsilon);
      const key = request.promptCacheKey ?? options.affinityKey?.(request);
      if (key !== undefined) {
        let best: (typeof pool)[number] | undefined;
        let bestWeight = -1;
        for (const c of pool) {
          const w = hash32(`${key}\u0000${c.id}`);
          if (w > bestWeight) {
            bestWeight = w;
            best = c;
          }
        }
        return best;
      }
      const blocks = blocksOf(request);
      const shared = sharedDepth(blocks);
      const own = Math.max(1, blocks.length - shared);
      let maxLoad = 0;
      for (const c of pool) maxLoad = Math.max(maxLoad, c.inFlight + (c.metrics?.waiting ?? 0));
      let best: (typeof pool)[number] | undefined;
      let bestScore = -Infinity;
      let ties = 0;
      for (const c of pool) {
        const matched = blocks.length ? indexOf(c.id).matched(blocks) : 0;
        (request.matched ??= new Map()).set(c.id, matched);
        // Any block of the conversation's own history marks the replica it lives on; more of it, more so.
        const ownMatched = Math.max(0, matched - shared);
        const prefix =
          (ownMatched > 0 ? 0.5 + (0.5 * ownMatched) / own : 0) + (0.1 * Math.min(matched, shared)) / Math.max(1, blocks.length);
        const load = maxLoad ? 1 - (c.inFlight + (c.metrics?.waiting ?? 0)) / maxLoad : 1;
        const kv = 1 - (c.metrics?.kvCacheUsage ?? 0);
        const score = weights.prefix * prefix + weights.load * load + weights.kvCache * kv;
        if (score > bestScore + 1e-9) {
          best = c;
          bestScore = score;
          ties = 1;
        } else if (Math.abs(score - bestScore) <= 1e-9 && random() * ++ties < 1) {
          best = c;
        }
      }
      return best;
    },
    record(request, replica) {
      const blocks = blocksOf(request);
      if (!blocks.length) return;
      const held = request.matched?.get(replica.id) ?? 0;
      indexOf(replica.id).insert(blocks, held);
      // Continuations before the held prefix are already known: it is the same chain.
      for (let i = Math.max(0, held - 1); i < blocks.length - 1; i++) {
        const seen = continuations.get(blocks[i]!);
        if (!seen) continuations.set(blocks[i]!, { next: blocks[i + 1]!, shared: false });
        else if (seen.next !== blocks[i + 1]) seen.shared = true;
      }
      // Bounded like the indexes: forget the oldest entries.
      if (continuations.size > 4 * capacity) for (const key of [...continuations.keys()].slice(0, capacity)) continuations.delete(key);
    },
  };
}
