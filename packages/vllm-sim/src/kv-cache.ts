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
    // A 64-byte block holds about 16 tokens of English.
    this.capacityBlocks = Math.max(1, Math.floor(tokens / BLOCK_TOKENS));
    this.index = new PrefixIndex(this.capacityBlocks);
  }

  /**
   * Looks up the prompt's cached prefix, then admits its blocks; returns the cached tokens (the
   * matched share of the prompt). A `cache_salt` seeds the block hashes, as vLLM mixes it into
   * its first block: prompts with different salts share nothing.
   */
  admit(prompt: PromptParts, promptTokens: number, salt?: string): number {
    const blocks = prefixBlocks(prompt, BLOCK_CHARS, 1 << 20, salt);
    if (!blocks.length) return 0;
    const matched = this.index.matched(blocks);
    this.index.insert(blocks, matched);
    return Math.floor((promptTokens * matched) / blocks.length);
  }
}
