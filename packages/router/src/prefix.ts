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

/**
 * Room for at least `bytes` (doubled, to grow rarely). The size is a whole number of words, and
 * both views are built before either is swapped in, so a failure leaves the old pair intact.
 */
function growScratch(bytes: number): void {
  const grown = new Uint8Array(Math.ceil((bytes * 2) / 4) * 4);
  const grownWords = new Int32Array(grown.buffer);
  scratch = grown;
  words = grownWords;
}

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

/**
 * Block hashes of recent long message texts, by block size, keyed by the text and checked against
 * the chain hash it started from: a conversation resends its history every turn, so only the new
 * messages are encoded and hashed. Bounded by entries and by characters held.
 */
const MEMO_MIN_CHARS = 512;
const MEMO_MAX_ENTRIES = 1024;
const MEMO_MAX_CHARS = 2 * 1024 * 1024;
/** `complete`: the text was hashed to its end; else its blocks stop where the block budget ran out. */
const memos = new Map<number, Map<string, { seed: number; blocks: number[]; complete: boolean }>>();
let memoChars = 0;

function remember(blockWords: number, text: string, seed: number, blocks: number[], complete: boolean): void {
  let memo = memos.get(blockWords);
  if (!memo) {
    memo = new Map<string, { seed: number; blocks: number[]; complete: boolean }>();
    memos.set(blockWords, memo);
  }
  const old = memo.get(text);
  if (old) {
    memo.delete(text);
    memoChars -= text.length;
  }
  memo.set(text, { seed, blocks, complete });
  memoChars += text.length;
  while (memo.size > MEMO_MAX_ENTRIES || memoChars > MEMO_MAX_CHARS) {
    const oldest = memo.keys().next();
    if (oldest.done) break;
    memo.delete(oldest.value);
    memoChars -= oldest.value.length;
  }
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
    const memoized = text.length >= MEMO_MIN_CHARS;
    if (memoized) {
      const hit = memos.get(blockWords)?.get(text);
      // A text cut by the block budget replays only into a budget no larger than what was hashed.
      if (hit && hit.seed === hash && (hit.complete || maxBlocks - blocks.length <= hit.blocks.length)) {
        for (let i = 0; i < hit.blocks.length && blocks.length < maxBlocks; i++) blocks.push((hash = hit.blocks[i]!));
        return;
      }
    }
    const seed = hash;
    const first = blocks.length;
    // Only the bytes the block budget can still use are encoded: a character is at least one byte, so that many
    // characters (and one more, to keep a surrogate pair whole) cover them, however long the message.
    const room = (maxBlocks - blocks.length) * blockWords * 4;
    const cut = text.length > room + 1;
    const part = cut ? text.slice(0, room + 1) : text;
    // UTF-8 needs at most 3 bytes per UTF-16 unit, plus the padding of the last word.
    if (part.length * 3 + 4 > scratch.length) growScratch(part.length * 3 + 4);
    const { written } = encoder.encodeInto(part, scratch);
    // Zero the tail of the last word so stale bytes never enter a hash.
    for (let i = written; i < ((written + 3) & ~3); i++) scratch[i] = 0;
    const count = (written + 3) >> 2;
    let at = 0;
    for (; at < count && blocks.length < maxBlocks; at += blockWords) {
      hash = hashWords(at, Math.min(count, at + blockWords), hash);
      blocks.push(hash);
    }
    if (memoized) remember(blockWords, text, seed, blocks.slice(first), !cut && at >= count);
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
