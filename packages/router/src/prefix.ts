/** What the prefix scorer reads of a request: the prompt as the model sees it, tools included. */
export interface PromptParts {
  readonly messages?: ReadonlyArray<{ readonly role: string; readonly content?: unknown }>;
  readonly tools?: readonly unknown[];
}

// One scratch buffer for UTF-8 bytes, reused (routing is synchronous); its 32-bit view lets the
// hash take four bytes a step.
let scratch = new Uint8Array(64 * 1024);
let words = new Int32Array(scratch.buffer);
const encoder = new TextEncoder();

/** A 32-bit multiply-xorshift hash over words [from, to) of the scratch buffer, chained from `seed`. */
function hashWords(from: number, to: number, seed: number): number {
  let h = seed ^ 0x9e3779b9;
  for (let i = from; i < to; i++) {
    h = Math.imul(h ^ words[i]!, 0x85ebca6b);
    h ^= h >>> 15;
  }
  return (h ^ (h >>> 13)) >>> 0;
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p: { text?: unknown }) => (typeof p?.text === 'string' ? p.text : '')).join('');
  return '';
}

function seedOf(salt: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193);
  return h | 1;
}

/**
 * Chained hashes of blocks of the rendered prompt (tools, then each message): block i's hash
 * depends on every byte before it, so equal hashes mean an equal prefix. Blocks are at most
 * `blockChars` long and also end where a message ends, so a conversation's own messages form
 * blocks of their own from the first turn on. Bytes, not tokens (no tokenizer on the routing
 * path), and at most `maxBlocks`.
 */
export function prefixBlocks(prompt: PromptParts, blockChars: number, maxBlocks: number, salt?: string): number[] {
  const blocks: number[] = [];
  const blockWords = Math.max(1, blockChars >> 2);
  // A salt seeds the chain (as vLLM mixes `cache_salt` into its first block), so every block hash differs per partition.
  let hash = salt ? seedOf(salt) : 0;
  const add = (text: string) => {
    // UTF-8 needs at most 3 bytes per UTF-16 unit; grow the scratch buffer when a message could not fit.
    const need = text.length * 3 + 4;
    if (need > scratch.length) {
      scratch = new Uint8Array(need * 2);
      words = new Int32Array(scratch.buffer);
    }
    const { written } = encoder.encodeInto(text, scratch);
    // Zero the tail of the last word so stale bytes never enter a hash.
    for (let i = written; i < ((written + 3) & ~3); i++) scratch[i] = 0;
    const count = (written + 3) >> 2;
    for (let at = 0; at < count && blocks.length < maxBlocks; at += blockWords) {
      hash = hashWords(at, Math.min(count, at + blockWords), hash);
      blocks.push(hash);
    }
  };
  if (prompt.tools?.length) add(JSON.stringify(prompt.tools));
  for (const m of prompt.messages ?? []) {
    if (blocks.length >= maxBlocks) break;
    add(`\u0000${m.role}\u0000${contentText(m.content)}`);
  }
  return blocks;
}

/**
 * Block hashes a replica was sent, bounded: past the capacity the oldest inserted go first (an
 * approximate LRU that costs one map write a block).
 */
export class PrefixIndex {
  private readonly blocks = new Set<number>();
  constructor(public capacity: number) {}

  /** How many leading blocks of `blocks` this replica holds (a binary search: chained blocks are held as a prefix). */
  matched(blocks: readonly number[]): number {
    let lo = 0;
    let hi = blocks.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.blocks.has(blocks[mid - 1]!)) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  insert(blocks: readonly number[], from = 0): void {
    for (let i = from; i < blocks.length; i++) this.blocks.add(blocks[i]!);
    if (this.blocks.size > this.capacity) {
      let excess = this.blocks.size - this.capacity;
      for (const b of this.blocks) {
        if (excess-- <= 0) break;
        this.blocks.delete(b);
      }
    }
  }

  get size(): number {
    return this.blocks.size;
  }
}
