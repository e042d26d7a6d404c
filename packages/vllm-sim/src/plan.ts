import { countPromptTokens, countTextTokens, type ChatCompletionRequest, type ChatTool } from '@tera-gw/core';
import { encode, decode } from 'gpt-tokenizer/encoding/o200k_harmony';
import { createRandom, fnv1a, pick, randomHex, randomInt } from './prng.js';
import { readPrompt, renderPrompt, type PromptReading } from './harmony.js';
import { instanceOf, withHint } from './schema-instance.js';

export interface PlannedToolCall {
  id: string;
  name: string;
  arguments: string;
}

export interface TokenPiece {
  text: string;
  logprob: number;
}

/** Everything a response will say, decided up front so streaming and non-streaming agree byte for byte. */
export interface Plan {
  reasoning: TokenPiece[];
  content: TokenPiece[];
  toolCalls: PlannedToolCall[];
  finishReason: 'stop' | 'length' | 'tool_calls';
  stopReason: string | null;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the prefix cache, when usage reports them. */
  cachedTokens?: number;
  random: () => number;
}

const VOCAB = (
  'the model server answer question request token stream reply cache prefix replica gateway latency number value ' +
  'simple result check first second next final short clear given short sum total count small large fast slow ' +
  'user asks about this that with from into over under after before while where which there then than ' +
  'think consider note seems likely should would could must might also just only still even each every ' +
  'data text line word list table field name type time day week year city weather price plan step case point'
).split(' ');

const STOP_WORDS = new Set(
  'the a an and or for with from that this what when your you are is of to in on get set current given returns return use using some any'.split(
    ' ',
  ),
);

const plain = { disallowedSpecial: new Set<string>() };

/** Splits text into its o200k tokens, each decoded alone; bytes of a multibyte character stay together. */
export function tokenPieces(text: string, random: () => number): TokenPiece[] {
  const tokens = encode(text, plain);
  const pieces: TokenPiece[] = [];
  let pending: number[] = [];
  for (const token of tokens) {
    pending.push(token);
    const piece = decode(pending);
    if (piece.endsWith('\uFFFD') && pending.length < 4) continue;
    pieces.push({ text: piece, logprob: logprob(random) });
    pending = [];
  }
  if (pending.length) pieces.push({ text: decode(pending), logprob: -0.5 });
  return pieces;
}

// Words whose forms (" word", " Word", "Word") are one o200k token each, so prose is built
// from token pieces directly, without tokenizing it per request.
let singleTokenWords: Array<{ lower: string; upper: string; first: string }> | undefined;
function words() {
  if (!singleTokenWords) {
    singleTokenWords = [];
    for (const w of VOCAB) {
      const cap = w[0]!.toUpperCase() + w.slice(1);
      if (countTextTokens(` ${w}`) === 1 && countTextTokens(` ${cap}`) === 1 && countTextTokens(cap) === 1) {
        singleTokenWords.push({ lower: ` ${w}`, upper: ` ${cap}`, first: cap });
      }
    }
  }
  return singleTokenWords;
}

function logprob(random: () => number): number {
  return -Math.round(random() * 2_000_000) / 1_000_000;
}

/** About `approxWords` words of sentences, as one-token pieces; the first word starts the text. */
function prose(random: () => number, approxWords: number, startsText: boolean): TokenPiece[] {
  const vocab = words();
  const pieces: TokenPiece[] = [];
  let count = 0;
  while (count < approxWords) {
    const n = randomInt(random, 5, 11);
    for (let i = 0; i < n; i++) {
      const w = pick(random, vocab);
      const text = i > 0 ? w.lower : pieces.length === 0 && startsText ? w.first : w.upper;
      pieces.push({ text, logprob: logprob(random) });
    }
    pieces.push({ text: '.', logprob: logprob(random) });
    count += n;
  }
  return pieces;
}

const joined = (pieces: readonly TokenPiece[]): string => pieces.map((p) => p.text).join('');

const wordsOf = (text: string): string[] =>
  text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length >= 3 && !STOP_WORDS.has(w))
    .map((w) => (w.length > 4 && w.endsWith('s') ? w.slice(0, -1) : w));

/** Words that ask for something done in a shell: a tool taking a command string fits them. */
const SHELL_WORDS = new Set(['list', 'file', 'director', 'directory', 'folder', 'run', 'command', 'execute', 'shell', 'script', 'build']);

function takesCommand(tool: ChatTool): boolean {
  const props = (tool.function.parameters as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties ?? {};
  return ['cmd', 'command'].some(
    (name) => props[name]?.type === 'string' || (Array.isArray(props[name]?.type) && props[name]?.type.includes('string')),
  );
}

/**
 * How well a tool fits the request, as a model would weigh it: its name said outright, the words
 * of its name (twice) and description shared with the request, and a request to do something in
 * a shell meeting a tool that runs a command. 0: it does not fit.
 */
function relevance(text: string, tool: ChatTool): number {
  const lower = text.toLowerCase();
  const name = tool.function.name.toLowerCase();
  if (lower.includes(name) || lower.includes(name.replaceAll('_', ' '))) return 100;
  const asked = new Set(wordsOf(text));
  let score = 0;
  for (const w of new Set(wordsOf(name.replaceAll(/[_-]/g, ' ')))) if (asked.has(w)) score += 2;
  for (const w of new Set(wordsOf(tool.function.description ?? ''))) if (asked.has(w)) score += 1;
  if (takesCommand(tool) && [...asked].some((w) => SHELL_WORDS.has(w))) score += 10;
  return score;
}

function chooseTools(request: PlanRequest): ChatTool[] {
  const tools = request.reading.tools;
  const choice = request.toolChoice ?? 'auto';
  if (!tools.length || choice === 'none') return [];
  if (typeof choice === 'object') return tools.filter((t) => t.function.name === choice.function.name).slice(0, 1);
  // After a tool result the model answers, unless the caller insists on a call.
  if (request.reading.toolResult !== undefined && choice === 'auto') return [];
  const text = request.reading.lastUser;
  const scores = tools.map((t) => relevance(text, t));
  const best = Math.max(0, ...scores);
  // The best fit, and another only when it fits nearly as well (the request asks for both); in the order given.
  let matched = best > 0 ? tools.filter((_, i) => scores[i]! * 2 >= best) : [];
  if (choice === 'required' && !matched.length) matched = [tools[0]!];
  if (request.parallelToolCalls === false) matched = matched.slice(0, 1);
  return matched.slice(0, 2);
}

const REASONING_WORDS = { low: 16, medium: 40, high: 96 } as const;

function applyStop(text: string, stop: string | string[] | null | undefined): { text: string; stopReason: string | null } {
  if (!stop) return { text, stopReason: null };
  let cut = -1;
  let reason: string | null = null;
  for (const s of typeof stop === 'string' ? [stop] : stop) {
    if (!s) continue;
    const at = text.indexOf(s);
    if (at !== -1 && (cut === -1 || at < cut)) {
      cut = at;
      reason = s;
    }
  }
  return cut === -1 ? { text, stopReason: null } : { text: text.slice(0, cut), stopReason: reason };
}

// Prompts repeat (conversations resend their history, benchmarks their body): remember the
// count of each message text, bounded.
const messageTokens = new Map<string, number>();
const memo = {
  get: (text: string) => messageTokens.get(text),
  set(text: string, tokens: number) {
    if (messageTokens.size >= 10_000) messageTokens.clear();
    messageTokens.set(text, tokens);
  },
};

/**
 * The prompt's tokens as the gateway counts them, yielding to the event loop every few
 * milliseconds: a long prompt never holds the other requests this replica serves.
 */
export function countPrompt(body: ChatCompletionRequest): Promise<number> {
  return countPromptTokens(body, { memo });
}

/** What an answer is decided from: the rendered prompt as the model reads it, and the sampling settings that steer it. */
export interface PlanRequest {
  /** The Harmony prompt: with a seed, the answer is a function of it (any replica continues it alike). */
  prompt: string;
  reading: PromptReading;
  seed: number | null | undefined;
  /** Output tokens allowed; Infinity to decide the whole answer and cut it elsewhere. */
  budget: number;
  toolChoice: ChatCompletionRequest['tool_choice'];
  parallelToolCalls: boolean | null | undefined;
  stop: string | string[] | null | undefined;
  jsonObject: boolean;
}

/** A chat request as the model sees it: rendered in Harmony, read back (tools as their TypeScript-like form tells them). */
export function planRequestOf(body: ChatCompletionRequest, budget: number): PlanRequest {
  const prompt = renderPrompt(body);
  return {
    prompt,
    reading: readPrompt(prompt),
    seed: body.seed,
    budget,
    toolChoice: body.tool_choice,
    parallelToolCalls: body.parallel_tool_calls,
    stop: body.stop,
    jsonObject: body.response_format?.type === 'json_object',
  };
}

/**
 * Decides a response. Seeded requests are deterministic: the seed and the rendered prompt pick
 * the words, so the same prompt with the same seed gives the same text on any replica and
 * another seed other text. Unseeded requests vary, as sampling does.
 */
export function planResponse(request: PlanRequest, promptTokens: number): Plan {
  const { reading } = request;
  const seed = request.seed != null ? fnv1a(request.prompt, fnv1a(String(request.seed))) : (Math.random() * 0x100000000) >>> 0;
  const random = createRandom(seed);
  const budget = request.budget;

  // The start is all that is quoted: white space folded over a bounded slice, never the whole prompt.
  const asked = reading.lastUser.slice(0, 240).replaceAll(/\s+/g, ' ').trim().slice(0, 60);
  const effort = reading.effort;
  let reasoning = [...tokenPieces(`The user asks: "${asked}".`, random), ...prose(random, REASONING_WORDS[effort], false)];
  let finishReason: Plan['finishReason'] = 'stop';
  let stopReason: string | null = null;
  let content: TokenPiece[] = [];
  const toolCalls: PlannedToolCall[] = [];

  if (reasoning.length >= budget) {
    reasoning = reasoning.slice(0, budget);
    finishReason = 'length';
  } else {
    const tools = chooseTools(request);
    if (tools.length) {
      for (const tool of tools) {
        const args = withHint(reading.lastUser, () =>
          // As a model calls a tool: what it requires, not every option it could set.
          instanceOf(tool.function.parameters ?? { type: 'object', properties: {} }, random, { requiredOnly: true }),
        );
        toolCalls.push({ id: `chatcmpl-tool-${randomHex(random, 32)}`, name: tool.function.name, arguments: JSON.stringify(args) });
      }
      finishReason = 'tool_calls';
    } else {
      if (reading.responseSchema !== undefined) {
        content = tokenPieces(JSON.stringify(instanceOf(reading.responseSchema, random)), random);
      } else if (request.jsonObject) {
        content = tokenPieces(
          JSON.stringify({ answer: joined(prose(random, 6, true)), confidence: Math.round(random() * 100) / 100 }),
          random,
        );
      } else if (reading.toolResult !== undefined) {
        const result = reading.toolResult.slice(0, 200);
        content = [...tokenPieces(`Based on the tool result: ${result}.`, random), ...prose(random, 12, false)];
      } else {
        content = prose(random, randomInt(random, 24, 48), true);
      }
      if (request.stop) {
        const stopped = applyStop(joined(content), request.stop);
        if (stopped.stopReason !== null) {
          stopReason = stopped.stopReason;
          content = tokenPieces(stopped.text, random);
        }
      }
      const room = budget - reasoning.length;
      if (content.length > room) {
        content = content.slice(0, room);
        finishReason = 'length';
        stopReason = null;
      }
    }
  }
  let completionTokens = reasoning.length + content.length;
  for (const call of toolCalls) completionTokens += countTextTokens(call.arguments) + countTextTokens(call.name) + 3;
  return { reasoning, content, toolCalls, finishReason, stopReason, promptTokens, completionTokens, random };
}

/**
 * Rewrites a plan into the Harmony leak a quirk names, byte for byte as released vLLM
 * versions let it through (vLLM issue #32587): control tokens in tool names, tool calls and
 * the analysis channel left in `content`, with or without the control tokens.
 */
export function applyHarmonyLeaks(plan: Plan, quirks: ReadonlySet<string>): Plan {
  const out = { ...plan };
  if (quirks.has('harmony-tool-name')) out.toolCalls = out.toolCalls.map((c) => ({ ...c, name: `${c.name}<|channel|>commentary` }));
  if (quirks.has('harmony-constrain-name')) out.toolCalls = out.toolCalls.map((c) => ({ ...c, name: `${c.name}<|constrain|>json` }));
  if (quirks.has('harmony-recipient')) out.toolCalls = out.toolCalls.map((c) => ({ ...c, name: `functions.${c.name}` }));
  const tokenForm = quirks.has('harmony-tool-in-content');
  if ((tokenForm || quirks.has('harmony-tool-in-content-plain')) && out.toolCalls.length) {
    const text = out.toolCalls
      .map((c) =>
        tokenForm
          ? `<|channel|>commentary to=functions.${c.name} <|constrain|>json<|message|>${c.arguments}<|call|>`
          : `commentary to=functions.${c.name} json${c.arguments}`,
      )
      .join('');
    out.content = tokenPieces(text, plan.random);
    out.toolCalls = [];
    out.finishReason = 'stop';
  }
  const analysisTokens = quirks.has('harmony-analysis-in-content');
  if ((analysisTokens || quirks.has('harmony-analysis-in-content-plain')) && !out.toolCalls.length && out.reasoning.length) {
    const reasoning = joined(out.reasoning);
    const content = joined(out.content);
    const text = analysisTokens
      ? `<|channel|>analysis<|message|>${reasoning}<|end|><|start|>assistant<|channel|>final<|message|>${content}`
      : `analysis${reasoning}assistantfinal${content}`;
    out.content = tokenPieces(text, plan.random);
    out.reasoning = [];
  }
  return out;
}

const pieces = (text: string): TokenPiece[] => (text.match(/.{1,4}/gs) ?? []).map((t) => ({ text: t, logprob: -0.05 }));

/**
 * The output failures gpt-oss shows on some vLLM releases: `empty-completion` (tokens counted,
 * no text in any channel: vllm#41902), `schema-break` (JSON that misses the schema: vllm#23120,
 * #37359), `invalid-json` (prose where JSON was asked for). Token counts stay as generated.
 */
export function brokenOutput(plan: Plan, fault: 'empty-completion' | 'schema-break' | 'invalid-json'): Plan {
  if (fault === 'empty-completion') return { ...plan, reasoning: [], content: [], toolCalls: [], finishReason: 'stop', stopReason: null };
  const text = fault === 'schema-break' ? '{"unexpected": true}' : 'Sure! Here is the JSON you asked for:';
  return { ...plan, content: pieces(text), toolCalls: [], finishReason: 'stop', stopReason: null };
}
