import type { IncomingMessage, ServerResponse } from 'node:http';
import { issueToError, readBody, type ChatCompletionRequest } from '@tera-gw/core';
import { lenientChatCompletionRequestSchema } from '@tera-gw/core/internal';
import { answerEarlyFault, pickFault } from './faults.js';
import { FAULTS, type Fault, type ToolCallQuirk } from './options.js';
import { respond, stream, type Generation } from './output.js';
import { encodeHarmony } from './harmony.js';
import type { TokenView } from './output-ids.js';
import { applyHarmonyLeaks, brokenOutput, countPrompt, planRequestOf, planResponse, type Plan } from './plan.js';
import { cutToBudget, harmonyOutput, idsOf } from './steps.js';
import { randomHex } from './prng.js';
import type { Sim } from './sim.js';

/** A chat request read and planned, or undefined when it was already answered (an error, a fault). */
interface Planned {
  body: ChatCompletionRequest;
  plan: Plan;
  /** Asked with `return_token_ids`: the prompt's ids and the generated tokens. */
  tokens: TokenView | undefined;
  fault: Fault | undefined;
  quirks: ReadonlySet<ToolCallQuirk>;
  id: string;
}

/** Reads the body as vLLM would (JSON, the chat schema, the model), meets the early faults, and plans the answer. */
async function readAndPlan(sim: Sim, req: IncomingMessage, res: ServerResponse): Promise<Planned | undefined> {
  let raw: Buffer;
  try {
    raw = await readBody(req, { maxBytes: 64 * 1024 * 1024 });
  } catch {
    return void sim.error(res, 400, 'BadRequestError', 'Could not read the request body.');
  }
  const picked = pickFault(sim, req);
  if (!picked)
    return void sim.error(
      res,
      400,
      'BadRequestError',
      `Unknown x-sim-fault '${String(req.headers['x-sim-fault'])}'; one of ${FAULTS.join(', ')}.`,
    );
  const { fault } = picked;
  if (answerEarlyFault(sim, req, res, fault)) return undefined;
  let input: unknown;
  try {
    input = JSON.parse(raw.toString('utf8'));
  } catch {
    return void sim.error(res, 400, 'BadRequestError', 'JSON decode error: the request body is not valid JSON.');
  }
  const parsed = lenientChatCompletionRequestSchema.safeParse(input);
  if (!parsed.success) {
    const error = issueToError(parsed.error.issues[0]!);
    return void sim.error(res, 400, 'BadRequestError', error.message, error.param);
  }
  const body = parsed.data as ChatCompletionRequest;
  if (body.model !== sim.model) return void sim.error(res, 404, 'NotFoundError', `The model \`${body.model}\` does not exist.`, 'model');
  const wantsIds = (input as { return_token_ids?: unknown }).return_token_ids === true;
  const asked = body.max_completion_tokens ?? body.max_tokens;
  let plan: Plan;
  let promptIds: number[] | undefined;
  if (wantsIds) {
    // The answer is decided whole, then cut to the budget in generated tokens (control tokens count), as the engine does.
    const request = planRequestOf(body, Infinity);
    promptIds = encodeHarmony(request.prompt);
    plan = planResponse(request, promptIds.length);
  } else {
    const promptTokens = await countPrompt(body);
    plan = planResponse(planRequestOf(body, asked ?? Math.max(0, sim.maxModelLen - promptTokens)), promptTokens);
  }
  if (fault === 'empty-completion' || fault === 'schema-break' || fault === 'invalid-json') plan = brokenOutput(plan, fault);
  const requested = body.max_completion_tokens ?? body.max_tokens ?? 0;
  if (plan.promptTokens + requested > sim.maxModelLen || plan.promptTokens >= sim.maxModelLen)
    return void sim.error(
      res,
      400,
      'BadRequestError',
      `This model's maximum context length is ${sim.maxModelLen} tokens. However, you requested ${plan.promptTokens + requested} tokens (${plan.promptTokens} in the messages, ${requested} in the completion). Please reduce the length of the messages or completion.`,
    );
  const quirkHeader = req.headers['x-sim-quirk'];
  const quirks =
    typeof quirkHeader === 'string' ? new Set(quirkHeader.split(',').map((q) => q.trim()) as ToolCallQuirk[]) : sim.defaultQuirks;
  if ([...quirks].some((q) => q.startsWith('harmony-'))) plan = applyHarmonyLeaks(plan, quirks);
  let tokens: TokenView | undefined;
  if (promptIds) {
    const cut = cutToBudget(harmonyOutput(plan), asked ?? Math.max(0, sim.maxModelLen - promptIds.length));
    tokens = { prompt: promptIds, steps: cut.steps, end: cut.end };
    if (cut.cut) {
      plan.finishReason = 'length';
      plan.stopReason = null;
    }
    plan.completionTokens = idsOf(cut.steps, cut.end).length;
  }
  const requestId = req.headers['x-request-id'];
  const id = `chatcmpl-${typeof requestId === 'string' && requestId ? requestId : randomHex(plan.random, 32)}`;
  return { body, plan, tokens, fault, quirks, id };
}

/** `POST /v1/chat/completions`: planned up front, then run in the batch (waiting its turn), answered whole or streamed. */
export async function chat(sim: Sim, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const planned = await readAndPlan(sim, req, res);
  if (!planned) return;
  const { body, plan } = planned;
  const { engine } = sim;
  const metrics = engine.metrics;
  const aborter = new AbortController();
  let finished = false;
  let emittedTokens = 0;
  res.once('close', () => {
    if (finished) return;
    finished = true;
    aborter.abort();
    metrics.finished.abort++;
    metrics.generationTokens += emittedTokens;
  });
  const started = performance.now();
  await engine.warmUp(aborter.signal);
  if (aborter.signal.aborted || !(await engine.admit(aborter.signal))) return;
  const sequence = engine.start(body, plan.promptTokens, plan.completionTokens, body.cache_salt);
  if (sim.options.enablePromptTokensDetails) plan.cachedTokens = sequence.cached;
  const generation: Generation = {
    ...planned,
    res,
    signal: aborter.signal,
    onTokens: (n) => (emittedTokens += n),
    started,
    prefillMs: sequence.prefillMs,
  };
  try {
    const done = body.stream ? await stream(sim, generation) : await respond(sim, generation);
    if (done && !finished) {
      finished = true;
      metrics.finished[plan.finishReason === 'length' ? 'length' : 'stop']++;
      metrics.generationTokens += plan.completionTokens;
    }
  } finally {
    sequence.release();
  }
}
