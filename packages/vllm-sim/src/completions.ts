import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '@tera-gw/core';
import { sleep } from './engine.js';
import { SPECIAL, decodeHarmony, encodeHarmony, readPrompt } from './harmony.js';
import { planResponse, tokenPieces } from './plan.js';
import { createRandom, randomHex } from './prng.js';
import type { Sim } from './sim.js';
import { cutToBudget, harmonyOutput, idsOf, type Step } from './steps.js';
import { encode } from 'gpt-tokenizer/encoding/o200k_harmony';

/** `POST /v1/completions` as vLLM takes it: a prompt as text or token ids, and the sampling settings. */
interface CompletionsBody {
  model?: unknown;
  prompt?: unknown;
  max_tokens?: unknown;
  stream?: unknown;
  stream_options?: { include_usage?: boolean; continuous_usage_stats?: boolean } | null;
  skip_special_tokens?: unknown;
  return_token_ids?: unknown;
  seed?: unknown;
  stop?: unknown;
}

const ASSISTANT = encode('assistant')[0]!;

/** What a prompt continues: the generation prompt of the conversation in it, and what was generated after it. */
interface Continuation {
  steps: Step[];
  end: number | undefined;
}

/**
 * The generation prompts a continuation may start from: each `<|start|>assistant` after which
 * only the assistant speaks (what follows is output generated so far, never a user's or a tool's
 * turn), earliest first.
 */
function generationStarts(ids: readonly number[]): number[] {
  const starts: number[] = [];
  for (let i = 0; i + 1 < ids.length; i++) {
    if (ids[i] !== SPECIAL['<|start|>']) continue;
    if (ids[i + 1] === ASSISTANT) starts.push(i + 2);
    // Another role speaks after: the starts before are history.
    else starts.length = 0;
  }
  return starts;
}

/** The steps left of `steps` once `done` generated ids are taken off the front (a step cut in two keeps its rest). */
function after(steps: readonly Step[], done: number): Step[] {
  const rest: Step[] = [];
  let seen = 0;
  for (const step of steps) {
    if (seen >= done) rest.push(step);
    else if (seen + step.ids.length > done) {
      const ids = step.ids.slice(done - seen);
      rest.push({ ...step, ids, text: step.kind === 'control' ? '' : decodeHarmony(ids) });
    }
    seen += step.ids.length;
  }
  return rest;
}

/**
 * The model continues its own answer: the conversation rendered before a generation start is
 * planned again (with the same seed, the same answer), and what follows the ids already generated
 * is the continuation. Undefined when no start's answer begins with what was generated (another
 * seed, no seed, or a prompt the simulator did not render).
 */
function continueAnswer(ids: readonly number[], seed: number | undefined, stop: string | string[] | undefined): Continuation | undefined {
  for (const start of generationStarts(ids)) {
    const done = ids.length - start;
    if (done > 0 && ids[start] !== SPECIAL['<|channel|>']) continue;
    const prompt = decodeHarmony(ids.slice(0, start));
    const reading = readPrompt(prompt);
    const request = {
      prompt,
      reading,
      seed,
      budget: Infinity,
      toolChoice: undefined,
      parallelToolCalls: undefined,
      stop,
      jsonObject: false,
    };
    const output = harmonyOutput(planResponse(request, start));
    const planned = idsOf(output.steps, output.end);
    if (done > planned.length) continue;
    let same = true;
    for (let i = 0; i < done && same; i++) same = planned[i] === ids[start + i];
    if (same) return { steps: after(output.steps, done), end: done === planned.length ? undefined : output.end };
  }
  return undefined;
}

const wordSteps = (text: string, kind: 'reasoning' | 'content', random: () => number): Step[] =>
  tokenPieces(text, random).map((piece) => ({ kind, ids: encode(piece.text), text: piece.text }));
const controlSteps = (text: string): Step[] => encodeHarmony(text).map((id) => ({ kind: 'control' as const, ids: [id], text: '' }));

/**
 * A valid continuation of an answer the simulator did not plan (no seed, so sampling differs):
 * reasoning ends and an answer follows, an answer goes on and ends. A tool call's arguments
 * cannot be continued validly without the plan: words, as for any other prompt.
 */
function anotherContinuation(ids: readonly number[], seed: number | undefined): Continuation {
  const random = createRandom(seed ?? (Math.random() * 0x100000000) >>> 0);
  const start = generationStarts(ids).at(-1);
  const words = ` ${randomHex(random, 4)} and the answer goes on with a few more words.`;
  if (start === undefined) return { steps: wordSteps(words, 'content', random), end: undefined };
  const tail = decodeHarmony(ids.slice(start));
  const open = tail.lastIndexOf('<|message|>') > Math.max(tail.lastIndexOf('<|end|>'), tail.lastIndexOf('<|call|>'));
  const channel = /<\|channel\|>(\w+)[^<]*(?:<\|constrain\|>\w+)?<\|message\|>[^<]*$/.exec(tail)?.[1];
  const answer = [...controlSteps('<|channel|>final<|message|>'), ...wordSteps(words, 'content', random)];
  if (!open)
    return {
      steps: tail.endsWith('<|start|>assistant') || !tail ? answer : [...controlSteps('<|start|>assistant'), ...answer],
      end: SPECIAL['<|return|>'],
    };
  if (channel === 'analysis')
    return {
      steps: [...wordSteps(words, 'reasoning', random), ...controlSteps('<|end|><|start|>assistant'), ...answer],
      end: SPECIAL['<|return|>'],
    };
  if (channel === 'final') return { steps: wordSteps(words, 'content', random), end: SPECIAL['<|return|>'] };
  return { steps: wordSteps(words, 'content', random), end: undefined };
}

function promptIdsOf(prompt: unknown): number[] | undefined {
  if (typeof prompt === 'string') return encodeHarmony(prompt);
  const list = Array.isArray(prompt) && prompt.length === 1 && Array.isArray(prompt[0]) ? (prompt[0] as unknown[]) : prompt;
  if (Array.isArray(list) && list.length && list.every((id) => Number.isInteger(id) && (id as number) >= 0 && (id as number) < 201_088))
    return list as number[];
  return undefined;
}

/**
 * `POST /v1/completions`: a prompt as text or token ids. With `skip_special_tokens: false` the
 * text shows Harmony's control tokens; `return_token_ids` adds each chunk's ids (and the
 * prompt's, on the first); usage reports cached tokens from the replica's prefix cache.
 */
export async function completions(sim: Sim, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: CompletionsBody;
  try {
    body = JSON.parse((await readBody(req, { maxBytes: 64 * 1024 * 1024 })).toString('utf8')) as CompletionsBody;
  } catch {
    return sim.error(res, 400, 'BadRequestError', 'JSON decode error: the request body is not valid JSON.');
  }
  if (body.model !== sim.model) return sim.error(res, 404, 'NotFoundError', `The model \`${String(body.model)}\` does not exist.`, 'model');
  const ids = promptIdsOf(body.prompt);
  if (!ids) return sim.error(res, 400, 'BadRequestError', 'prompt must be a string or a list of token ids', 'prompt');
  const maxTokens = typeof body.max_tokens === 'number' ? body.max_tokens : 16;
  if (ids.length + maxTokens > sim.maxModelLen)
    return sim.error(
      res,
      400,
      'BadRequestError',
      `This model's maximum context length is ${sim.maxModelLen} tokens. However, you requested ${ids.length + maxTokens} tokens (${ids.length} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
    );
  const seed = typeof body.seed === 'number' ? body.seed : undefined;
  const stop = typeof body.stop === 'string' || Array.isArray(body.stop) ? (body.stop as string | string[]) : undefined;
  const planned = continueAnswer(ids, seed, stop) ?? anotherContinuation(ids, seed);
  const cut = cutToBudget({ steps: planned.steps, end: planned.end }, maxTokens);
  const aborter = new AbortController();
  res.once('close', () => aborter.abort());
  await sim.engine.warmUp(aborter.signal);
  if (aborter.signal.aborted || !(await sim.engine.admit(aborter.signal))) return;
  const generated = idsOf(cut.steps, cut.end).length;
  const sequence = sim.engine.start({ messages: [{ role: 'prompt', content: decodeHarmony(ids) }] }, ids.length, generated, undefined);
  try {
    await answer(
      sim,
      res,
      body,
      {
        ids,
        steps: cut.steps,
        end: cut.end,
        finish: cut.cut || cut.end === undefined ? 'length' : 'stop',
        cached: sequence.cached,
        prefillMs: sequence.prefillMs,
      },
      aborter.signal,
    );
  } finally {
    sequence.release();
  }
}

interface Answer {
  ids: number[];
  steps: Step[];
  end: number | undefined;
  finish: 'stop' | 'length';
  cached: number;
  prefillMs: number;
}

async function answer(sim: Sim, res: ServerResponse, body: CompletionsBody, a: Answer, signal: AbortSignal): Promise<void> {
  const withMarkers = body.skip_special_tokens === false;
  const withIds = body.return_token_ids === true;
  const id = `cmpl-${randomHex(Math.random, 32)}`;
  const created = Math.floor(Date.now() / 1000);
  const textOf = (step: Step) => decodeHarmony(step.ids, withMarkers);
  const usage = (generated: number) => ({
    prompt_tokens: a.ids.length,
    total_tokens: a.ids.length + generated,
    completion_tokens: generated,
    prompt_tokens_details: sim.options.enablePromptTokensDetails ? { cached_tokens: a.cached } : null,
  });
  const total = idsOf(a.steps, a.end).length;
  const { state } = sim.engine;
  await sleep(a.prefillMs + state.ttftMs, signal);
  if (signal.aborted) return;
  if (body.stream !== true) {
    const choice: Record<string, unknown> = {
      index: 0,
      text: a.steps.map(textOf).join(''),
      logprobs: null,
      finish_reason: a.finish,
      stop_reason: null,
    };
    if (withIds) Object.assign(choice, { token_ids: idsOf(a.steps, a.end), prompt_token_ids: a.ids });
    return sim.json(
      res,
      200,
      JSON.stringify({ id, object: 'text_completion', created, model: sim.model, choices: [choice], usage: usage(total) }),
    );
  }
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const continuous = body.stream_options?.continuous_usage_stats === true;
  let generated = 0;
  const chunk = (choice: Record<string, unknown>, ids: readonly number[], first: boolean) => {
    generated += ids.length;
    const full: Record<string, unknown> = { index: 0, logprobs: null, ...choice };
    if (withIds) {
      full.token_ids = ids;
      if (first) full.prompt_token_ids = a.ids;
    }
    const payload = {
      id,
      object: 'text_completion',
      created,
      model: sim.model,
      choices: [full],
      ...(continuous ? { usage: usage(generated) } : {}),
    };
    return `data: ${JSON.stringify(payload)}\n\n`;
  };
  let first = true;
  for (const step of a.steps) {
    if (signal.aborted) return;
    res.write(chunk({ text: textOf(step), finish_reason: null, stop_reason: null }, step.ids, first));
    first = false;
    await sleep(state.itlMs, signal);
  }
  res.write(chunk({ text: '', finish_reason: a.finish, stop_reason: null }, a.end === undefined ? [] : [a.end], first));
  if (body.stream_options?.include_usage)
    res.write(
      `data: ${JSON.stringify({ id, object: 'text_completion', created, model: sim.model, choices: [], usage: usage(total) })}\n\n`,
    );
  res.end('data: [DONE]\n\n');
}
