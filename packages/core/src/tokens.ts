import type { ChatCompletionRequest, ChatMessage } from './schema.js';

type Encoding = typeof import('gpt-tokenizer/encoding/o200k_harmony');

let encoding: Encoding | undefined;
let loading: Promise<Encoding> | undefined;
// User text may contain Harmony control strings; they count as plain text, never as specials.
const asPlainText = { disallowedSpecial: new Set<string>() };

/**
 * Loads gpt-oss's tokenizer (o200k_harmony). Its tables take tens of milliseconds to
 * load, so it is loaded once, on first need, and never on the path of a request that
 * does not need an exact count.
 */
export function loadTokenizer(): Promise<Encoding> {
  loading ??= import('gpt-tokenizer/encoding/o200k_harmony').then((m) => (encoding = m));
  return loading;
}

/**
 * Longest piece of text handed to the tokenizer at once. BPE merges, and the pre-tokenizer's
 * backtracking, grow faster than linearly with the length of one pre-token, and a crafted
 * prompt makes one pre-token of anything: 200 KB of `a`, of white space, or `!` followed by a run
 * of `/`, `\r` and `\n` (5.4 s for 120 KB). Every text is cut into pieces of at most this many
 * characters, so counting costs at most (length / MAX_PIECE_CHARS + 1) times the cost of one
 * bounded piece: linear on every input. Cuts fall before a space where the piece has one in its
 * second half, as the o200k pre-tokenizer would cut there anyway (ordinary text counts exactly);
 * elsewhere a cut may add a token or two per piece, which a limit check can afford.
 */
export const MAX_PIECE_CHARS = 512;

/** True once `loadTokenizer()` has finished: `countTextTokens` may be called synchronously. */
export const tokenizerLoaded = (): boolean => encoding !== undefined;

/**
 * The text of gpt-oss token ids, Harmony's control tokens written out (`<|channel|>`...), as a
 * replica's output reads before its parser splits it. Needs `loadTokenizer()` to have finished.
 */
export function decodeTokenIds(ids: ArrayLike<number>): string {
  if (!encoding) throw new Error('decodeTokenIds() needs loadTokenizer() to have finished');
  return encoding.decode(Array.from(ids));
}

// A stream's deltas are a token or two each and repeat a small vocabulary: counting one costs
// a BPE pass (7% of a streamed event's CPU), a map lookup a tenth of that. Bounded: when full
// it starts over, so hostile text cannot grow it.
const SHORT_TEXT = 24;
const SHORT_MEMO_ENTRIES = 8192;
const shortCounts = new Map<string, number>();

let pieceObserver: ((piece: string) => void) | undefined;
/** Tests watch what reaches the tokenizer (`@tera-gw/core/internal`). */
export function observeTokenizerPieces(observer: ((piece: string) => void) | undefined): void {
  pieceObserver = observer;
}
/** Entries in the memo of short texts, for tests: it never holds more than its bound. */
export const shortTokenMemoSize = (): number => shortCounts.size;
export const SHORT_TOKEN_MEMO_ENTRIES = SHORT_MEMO_ENTRIES;

function countPiece(enc: Encoding, piece: string): number {
  pieceObserver?.(piece);
  return enc.countTokens(piece, asPlainText);
}

/** Where the piece starting at `at` ends: at most MAX_PIECE_CHARS on, before a space when there is one late enough, never inside a surrogate pair. */
function pieceEnd(text: string, at: number): number {
  const limit = at + MAX_PIECE_CHARS;
  if (limit >= text.length) return text.length;
  const space = text.lastIndexOf(' ', limit);
  if (space > at + MAX_PIECE_CHARS / 2) return space;
  const code = text.charCodeAt(limit - 1);
  // A high surrogate at the cut would be split from its pair.
  return code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
}

/** Tokens of `text` as plain text, in time linear in its length. Requires `loadTokenizer()` to have finished. */
export function countTextTokens(text: string): number {
  const enc = encoding;
  if (!enc) throw new Error('countTextTokens() called before loadTokenizer() resolved');
  if (text.length <= SHORT_TEXT) {
    let count = shortCounts.get(text);
    if (count === undefined) {
      count = countPiece(enc, text);
      if (shortCounts.size >= SHORT_MEMO_ENTRIES) shortCounts.clear();
      shortCounts.set(text, count);
    }
    return count;
  }
  if (text.length <= MAX_PIECE_CHARS) return countPiece(enc, text);
  let total = 0;
  for (let at = 0; at < text.length;) {
    const end = pieceEnd(text, at);
    total += countPiece(enc, text.slice(at, end));
    at = end;
  }
  return total;
}

export function messageText(message: ChatMessage): string {
  const content = message.content;
  let text = typeof content === 'string' ? content : '';
  if (Array.isArray(content)) for (const part of content) text += (part as { text?: string }).text ?? '';
  // vLLM renders reasoning sent back on an assistant turn as a Harmony analysis message (parse_chat_input_to_harmony_message).
  if (message.role === 'assistant') text += message.reasoning ?? message.reasoning_content ?? '';
  if (message.role === 'assistant' && message.tool_calls) {
    for (const call of message.tool_calls) text += ` to=functions.${call.function.name} ${call.function.arguments}`;
  }
  return text;
}

// Per message gpt-oss's Harmony rendering adds `<|start|>`, the role, `<|message|>`, `<|end|>`.
const TOKENS_PER_MESSAGE = 4;
// The system header vLLM renders for gpt-oss (identity, date, reasoning level, channels) plus `<|start|>assistant`.
const TOKENS_PER_PROMPT = 32;

/** Characters counted between two yields to the event loop (a few milliseconds of work). */
const PIECE = 16_384;

/** `text` in pieces of about PIECE characters, cut at white space where there is some (so the count barely changes). */
function* pieces(text: string): Generator<string> {
  let at = 0;
  while (text.length - at > PIECE) {
    let cut = text.lastIndexOf(' ', at + PIECE);
    if (cut <= at + PIECE / 2) cut = at + PIECE;
    yield text.slice(at, cut);
    at = cut;
  }
  yield at ? text.slice(at) : text;
}

export interface CountOptions {
  /** Stop counting once the total passes this: the caller only needs to know it is over. */
  stopAfter?: number;
  /** Counts of whole texts (a message, the tools) seen before: a conversation resends its history every turn. */
  memo?: { get(text: string): number | undefined; set(text: string, tokens: number): void };
}

/**
 * Prompt tokens of a chat request as the gateway and the simulator both count them: the
 * messages' text and tool definitions in o200k_harmony, plus the Harmony framing. The
 * upstream's own `usage.prompt_tokens` stays the billing truth; this count guards the
 * context length before a request is sent. It yields to the event loop every few
 * milliseconds of work, so a 4 MiB prompt does not stall other requests, and stops early
 * past `stopAfter` (a count above it is a lower bound).
 */
export async function countPromptTokens(
  body: Pick<ChatCompletionRequest, 'messages' | 'tools'>,
  options: CountOptions = {},
): Promise<number> {
  return (await countPromptTokensUpTo(body, options.stopAfter ?? Infinity, options.memo)).tokens;
}

/** The count and whether it is complete (false: it stopped past `stopAfter`, so `tokens` is a lower bound). */
export async function countPromptTokensUpTo(
  body: Pick<ChatCompletionRequest, 'messages' | 'tools'>,
  stopAfter: number,
  memo?: CountOptions['memo'],
): Promise<{ tokens: number; complete: boolean }> {
  await loadTokenizer();
  let total = TOKENS_PER_PROMPT;
  const texts = body.messages.map(messageText);
  total += TOKENS_PER_MESSAGE * texts.length;
  if (body.tools?.length) texts.push(JSON.stringify(body.tools));
  let sinceYield = 0;
  for (let t = 0; t < texts.length; t++) {
    const text = texts[t]!;
    const known = memo?.get(text);
    if (known !== undefined) {
      total += known;
      if (total > stopAfter) return { tokens: total, complete: false };
      continue;
    }
    let tokens = 0;
    for (const piece of pieces(text)) {
      tokens += countTextTokens(piece);
      if (total + tokens > stopAfter) return { tokens: total + tokens, complete: false };
      sinceYield += piece.length;
      if (sinceYield >= PIECE) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    total += tokens;
    memo?.set(text, tokens);
  }
  return { tokens: total, complete: true };
}

/** `countText` lets a caller that sees the same messages again (the simulator) memoize counts. */
export function countPromptTokensSync(
  body: Pick<ChatCompletionRequest, 'messages' | 'tools'>,
  countText: (text: string) => number = countTextTokens,
): number {
  let total = TOKENS_PER_PROMPT;
  for (const m of body.messages) total += TOKENS_PER_MESSAGE + countText(messageText(m));
  if (body.tools?.length) total += countText(JSON.stringify(body.tools));
  return total;
}
