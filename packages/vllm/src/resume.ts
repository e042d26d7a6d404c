import { CONTEXT_LENGTH, newToolCallId, type ChatCompletionChunk, type ChatCompletionRequest, type Usage } from '@tera-gw/core';
import { decodeTokenIds } from '@tera-gw/core/internal';

/**
 * Resuming a stream whose replica died, by token ids (vLLM 0.10.2 and later): the chat request
 * asks `return_token_ids`, the relay keeps the prompt's ids and every generated id, and the
 * continuation goes to another replica's `/v1/completions` as those ids, verbatim. The prompt
 * plus what was generated is exactly what the lost replica had: a greedy (or seeded) continuation
 * is the uninterrupted answer by construction. Its raw text (`skip_special_tokens: false`) is read
 * back into the chat deltas the caller was receiving.
 */

/** The ids of one stream: the prompt's, held for the stream's life (4 bytes a token), and the generated ones. */
export class TokenLog {
  prompt: Int32Array | undefined;
  private generated = new Int32Array(256);
  private count = 0;
  private missing = false;

  get generatedCount(): number {
    return this.count;
  }

  /** Takes the ids off an upstream chunk (chat: `prompt_token_ids` on the chunk; completions: on the choice). */
  observe(chunk: ChatCompletionChunk): void {
    const withIds = chunk as ChatCompletionChunk & { prompt_token_ids?: number[] };
    if (withIds.prompt_token_ids) {
      this.prompt ??= Int32Array.from(withIds.prompt_token_ids);
      withIds.prompt_token_ids = undefined;
    }
    // The ids vLLM adds to a choice when asked (`token_ids`; on completions also `prompt_token_ids`).
    const choice = chunk.choices[0] as unknown as { token_ids?: number[]; prompt_token_ids?: number[] } | undefined;
    if (choice?.prompt_token_ids) {
      this.prompt ??= Int32Array.from(choice.prompt_token_ids);
      choice.prompt_token_ids = undefined;
    }
    if (choice?.token_ids) {
      this.append(choice.token_ids);
      choice.token_ids = undefined;
    }
    // Streams carry usage on every chunk: an id the replica generated but did not send (vLLM before
    // its fix of tool parsers that hold text back, issue 27482) shows as a count that disagrees.
    if (chunk.usage && chunk.usage.completion_tokens !== this.count) this.missing = true;
  }

  private append(ids: number[]): void {
    if (this.count + ids.length > this.generated.length) {
      const grown = new Int32Array(Math.max(this.generated.length * 2, this.count + ids.length));
      grown.set(this.generated.subarray(0, this.count));
      this.generated = grown;
    }
    for (const id of ids) this.generated[this.count++] = id;
  }

  /**
   * True when the replica sent the prompt's ids (a release before 0.10.2 ignores the field) and
   * every generated id: a continuation from a log with a hole would be another conversation.
   */
  get complete(): boolean {
    return this.prompt !== undefined && !this.missing;
  }

  /** The prompt of the continuation: the original prompt's ids, then every id generated so far. */
  continuationPrompt(): number[] {
    const out = new Array<number>(this.prompt!.length + this.count);
    let i = 0;
    for (const id of this.prompt!) out[i++] = id;
    for (let j = 0; j < this.count; j++) out[i++] = this.generated[j]!;
    return out;
  }

  generatedText(): string {
    return decodeTokenIds(this.generated.subarray(0, this.count));
  }
}

/** What every id member's key ends with: under V8's seven characters, so a plain scan, never a Boyer-Moore table per call. */
const IDS_MEMBER = 'ids":[';

/**
 * Cuts `"token_ids":[...]` and `"prompt_token_ids":[...]` from a chunk's JSON text (arrays of
 * integers, no nesting), in one pass: every chunk of a resumable stream passes here, and on vLLM
 * every chunk carries ids (0.12 µs a chunk against 0.71 for a search per key).
 */
export function withoutTokenIds(data: string): string {
  let at = data.indexOf(IDS_MEMBER);
  if (at === -1) return data;
  let out = '';
  let from = 0;
  while (at !== -1) {
    const keyStart = data.lastIndexOf('"', at - 1);
    const end = data.indexOf(']', at) + 1;
    const key = data.slice(keyStart + 1, at + 3);
    if (key === 'token_ids' || key === 'prompt_token_ids') {
      // The member and one comma: the one before it (unless a member cut just before took it), or else the one after it.
      let start = keyStart;
      let stop = end;
      if (data.charCodeAt(start - 1) === 44 /* , */ && start - 1 >= from) start--;
      else if (data.charCodeAt(stop) === 44) stop++;
      if (start > from) out += data.slice(from, start);
      from = Math.max(from, stop);
    }
    at = data.indexOf(IDS_MEMBER, end);
  }
  return out + data.slice(from);
}

/** Why a stream cannot be resumed, or undefined when it can. */
export function notResumable(body: ChatCompletionRequest): string | undefined {
  // A constraint of the chat route (a schema, stop strings, chat-shaped logprobs) does not carry over to raw completions.
  if (body.response_format && body.response_format.type !== 'text') return 'structured output';
  if (body.stop) return 'stop sequences';
  if (body.logprobs) return 'logprobs';
  return undefined;
}

/** The `/v1/completions` request that continues the stream: same sampling, the budget less what was generated. */
export function continuationPayload(body: ChatCompletionRequest, log: TokenLog, cacheSalt: string | undefined): Buffer {
  const prompt = log.continuationPrompt();
  const asked = body.max_completion_tokens ?? body.max_tokens;
  const left = (asked ?? CONTEXT_LENGTH - log.prompt!.length) - log.generatedCount;
  const payload: Record<string, unknown> = {
    model: body.model,
    prompt,
    max_tokens: Math.max(1, Math.min(left, CONTEXT_LENGTH - prompt.length)),
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
    skip_special_tokens: false,
    return_token_ids: true,
  };
  for (const key of [
    'temperature',
    'top_p',
    'top_k',
    'min_p',
    'seed',
    'frequency_penalty',
    'presence_penalty',
    'repetition_penalty',
  ] as const) {
    const value = (body as Record<string, unknown>)[key];
    if (value !== undefined && value !== null) payload[key] = value;
  }
  if (cacheSalt !== undefined) payload.cache_salt = cacheSalt;
  return Buffer.from(JSON.stringify(payload));
}

type Part = { reasoning: string } | { content: string } | { toolStart: { index: number; name: string } } | { args: string };

const MARKERS = /(<\|(?:start|end|message|channel|constrain|call|return)\|>)/;

/**
 * Reads gpt-oss's raw output (Harmony, control tokens written out) into what the chat API makes
 * of it, as vLLM's Harmony parser does: the analysis channel is reasoning, the final channel
 * content, a commentary message to `functions.NAME` a tool call (its text the arguments), other
 * commentary content. Fed the text generated before the failure first (to know where it stands),
 * then the continuation.
 */
export class HarmonyReader {
  private mode: 'header' | 'message' | 'between' = 'header';
  // The prompt ended with `<|start|>assistant`: the output starts inside a header.
  private header = 'assistant';
  private kind: 'reasoning' | 'content' | 'args' | 'none' = 'none';
  private carry = '';
  /** Tool calls begun so far (the next one's index). */
  toolCalls = 0;

  /** True while a tool call's message is open, or when the last message was one: a `stop` ends in `tool_calls`. */
  get inToolCall(): boolean {
    return this.kind === 'args';
  }

  feed(text: string, out?: Part[]): void {
    let input = this.carry + text;
    this.carry = '';
    // A control token split across reads waits for its end.
    const open = input.lastIndexOf('<|');
    if (open !== -1 && input.indexOf('|>', open) === -1 && input.length - open < 16) {
      this.carry = input.slice(open);
      input = input.slice(0, open);
    }
    for (const piece of input.split(MARKERS)) {
      if (!piece) continue;
      if (piece.startsWith('<|') && piece.endsWith('|>') && MARKERS.test(piece)) this.marker(piece, out);
      else this.text(piece, out);
    }
  }

  private marker(marker: string, out: Part[] | undefined): void {
    if (marker === '<|start|>') {
      this.mode = 'header';
      this.header = '';
    } else if (marker === '<|message|>') {
      if (this.mode === 'header') this.open(out);
      this.mode = 'message';
    } else if (marker === '<|end|>' || marker === '<|call|>' || marker === '<|return|>') {
      this.mode = 'between';
    } else if (this.mode === 'header') this.header += marker;
  }

  private text(text: string, out: Part[] | undefined): void {
    if (this.mode === 'header') this.header += text;
    else if (this.mode === 'message' && out) {
      if (this.kind === 'reasoning') out.push({ reasoning: text });
      else if (this.kind === 'content') out.push({ content: text });
      else if (this.kind === 'args') out.push({ args: text });
    }
  }

  private open(out: Part[] | undefined): void {
    const channel = /<\|channel\|>\s*(\w+)/.exec(this.header)?.[1];
    const recipient = /to=functions\.([^\s<]+)/.exec(this.header)?.[1];
    if (recipient !== undefined) {
      this.kind = 'args';
      out?.push({ toolStart: { index: this.toolCalls, name: recipient } });
      this.toolCalls++;
    } else this.kind = channel === 'analysis' ? 'reasoning' : 'content';
  }
}

/** What the stream looked like to its caller, for chunks of the continuation to look the same. */
export interface StreamIdentity {
  id: string;
  created: number;
  model: string;
}

interface CompletionsChunk {
  choices?: Array<{ text?: string; finish_reason?: string | null; token_ids?: number[]; prompt_token_ids?: number[] }>;
  usage?: Usage | null;
}

/**
 * Turns the continuation's `/v1/completions` stream into the chat chunks the caller was
 * receiving (as SSE text for the same pipeline): same id, the deltas read from the raw text,
 * usage as the caller's request counts it (its own prompt, every generated token once).
 */
export class ContinuationTranslator {
  private pending = '';
  private readonly reader = new HarmonyReader();
  private readonly before: number;
  /** The continuation's own usage as its replica counts it (the re-read prompt, what its cache held): the gateway's cost, for telemetry. */
  upstreamUsage: Usage | undefined;

  constructor(
    private readonly identity: StreamIdentity,
    private readonly log: TokenLog,
    private readonly promptTokens: number,
    /** The original usage's `prompt_tokens_details` (cached tokens of the caller's prompt), as it was. */
    private readonly promptDetails: Usage['prompt_tokens_details'],
  ) {
    this.reader.feed(log.generatedText());
    this.before = log.generatedCount;
  }

  /** SSE text of the completions stream in, SSE text of chat chunks out. */
  feed(text: string): string {
    this.pending += text;
    let out = '';
    for (let end = this.pending.indexOf('\n\n'); end !== -1; end = this.pending.indexOf('\n\n')) {
      const event = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n');
      if (!data) continue;
      if (data === '[DONE]') out += 'data: [DONE]\n\n';
      else out += this.translate(data);
    }
    return out;
  }

  private translate(data: string): string {
    let chunk: CompletionsChunk;
    try {
      chunk = JSON.parse(data) as CompletionsChunk;
    } catch {
      // Left for the pipeline to report as malformed.
      return `data: ${data}\n\n`;
    }
    // An error object: passed on as it came, for the pipeline to classify.
    if (!Array.isArray(chunk.choices)) return `data: ${data}\n\n`;
    const choice = chunk.choices[0];
    const usage = chunk.usage ? this.callerUsage(chunk.usage) : undefined;
    if (!choice) return this.event([], usage);
    const ids = choice.token_ids;
    if (ids) this.log.observe({ choices: [{ token_ids: ids }] } as unknown as ChatCompletionChunk);
    const parts: Part[] = [];
    if (choice.text) this.reader.feed(choice.text, parts);
    let text = '';
    for (const part of parts) text += this.event([{ index: 0, delta: this.delta(part), logprobs: null, finish_reason: null }], usage);
    if (choice.finish_reason) {
      const finish = choice.finish_reason === 'length' ? 'length' : this.reader.inToolCall ? 'tool_calls' : 'stop';
      text += this.event([{ index: 0, delta: {}, logprobs: null, finish_reason: finish }], usage);
    } else if (!parts.length && usage) text += '';
    return text;
  }

  private delta(part: Part): Record<string, unknown> {
    if ('reasoning' in part) return { reasoning: part.reasoning };
    if ('content' in part) return { content: part.content };
    if ('toolStart' in part)
      return {
        tool_calls: [
          { id: newToolCallId(), type: 'function', index: part.toolStart.index, function: { name: part.toolStart.name, arguments: '' } },
        ],
      };
    return { tool_calls: [{ index: this.reader.toolCalls - 1, function: { arguments: part.args } }] };
  }

  private callerUsage(usage: Usage): Usage {
    this.upstreamUsage = usage;
    const completion = this.before + usage.completion_tokens;
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: completion,
      total_tokens: this.promptTokens + completion,
      ...(this.promptDetails !== undefined ? { prompt_tokens_details: this.promptDetails } : {}),
    };
  }

  private event(choices: unknown[], usage: Usage | undefined): string {
    const { id, created, model } = this.identity;
    const chunk: Record<string, unknown> = { id, object: 'chat.completion.chunk', created, model, choices };
    if (usage) chunk.usage = usage;
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }
}
