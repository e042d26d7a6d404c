import { PrefixIndex, prefixBlocks, type PromptParts } from '@tera-gw/router';

/** vLLM's KV block: 16 tokens. The simulator hashes about 4 characters a token, 64 per block. */
export const BLOCK_TOKENS = 16;
const BLOCK_CHARS = 64;

/**
 * The replica's prefix cache: blocks of the prompt it has seen, bounded, least recently used
 * out first. A prompt's cached prefix is what the blocks it shares with earlier prompts cover.
 */
export class KvCache {
  private readonly index: PrefixIndex;
  readonly capacityBlocks: number;

  constructor(tokens: number) {
    this.capacityBlocks = Math.max(1, Math.floor(tokens / BLOCK_TOKENS));
    this.index = new PrefixIndex(this.capacityBlocks);
  }

  /** Looks up the prompt's cached prefix, then admits its blocks; returns the cached tokens. */
  admit(prompt: PromptParts, promptTokens: number): number {
    const blocks = prefixBlocks(prompt, BLOCK_CHARS, Math.ceil(promptTokens / BLOCK_TOKENS) + 1);
    const cached = Math.min(promptTokens, this.index.matched(blocks) * BLOCK_TOKENS);
    this.index.insert(blocks);
    return cached;
  }

  get usage(): number {
    return this.index.size / this.capacityBlocks;
  }
}
