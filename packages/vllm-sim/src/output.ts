import type { ServerResponse } from 'node:http';
import type { ChatCompletionRequest } from '@tera-gw/core';
import { sleep } from './engine.js';
import { HARMONY_ERRORS } from './faults.js';
import type { Fault, ToolCallQuirk } from './options.js';
import { idsStreamEvents, messageOfTokens, type IdsEvent, type TokenView } from './output-ids.js';
import type { Plan, TokenPiece } from './plan.js';
import { idsOf } from './steps.js';
import type { Sim } from './sim.js';

/** One request's generation, decided up front: what both answer paths need. */
export interface Generation {
  res: ServerResponse;
  body: ChatCompletionRequest;
  plan: Plan;
  tokens: TokenView | undefined;
  id: string;
  quirks: ReadonlySet<ToolCallQuirk>;
  fault: Fault | undefined;
  signal: AbortSignal;
  /** Tokens emitted so far (for the abort counters). */
  onTokens: (n: number) => void;
  started: number;
  prefillMs: number;
}

/** A non-streamed answer after the whole generation's time; faults cut or stall it. False when it did not finish. */
export async function respond(sim: Sim, { res, body, plan, tokens, id, fault, signal, started, prefillMs }: Generation): Promise<boolean> {
  const { state, metrics } = sim.engine;
  if (fault === 'harmony-sse-before-text' || fault === 'harmony-sse-after-text') {
    sim.error(res, 500, 'InternalServerError', HARMONY_ERRORS[3]!);
    return false;
  }
  await sleep(prefillMs + state.ttftMs + state.itlMs * Math.max(0, plan.completionTokens - 1), signal);
  if (signal.aborted) return false;
  metrics.observeTTFT((performance.now() - started) / 1000);
  const answer = completion(sim, body, plan, id);
  if (tokens) {
    answer.choices[0]!.message = messageOfTokens(sim, plan, tokens);
    Object.assign(answer.choices[0]!, { token_ids: idsOf(tokens.steps, tokens.end) });
    Object.assign(answer, { prompt_token_ids: tokens.prompt });
  }
  const payload = JSON.stringify(answer);
  if (fault === 'drop-mid-stream' || fault === 'malformed-sse') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
    res.write(payload.slice(0, Math.floor(payload.length / 2)));
    if (fault === 'drop-mid-stream') res.destroy();
    else res.end();
    return false;
  }
  if (fault === 'stall') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return false;
  }
  sim.json(res, 200, payload);
  return true;
}

function reasoningDelta(sim: Sim, text: string): Record<string, string> {
  const reasoningField = sim.reasoningField;
  if (reasoningField === 'both') return { reasoning: text, reasoning_content: text };
  return { [reasoningField]: text };
}

function logprobsOf(piece: TokenPiece, top: number) {
  const bytes = [...Buffer.from(piece.text, 'utf8')];
  const alternatives = [{ token: piece.text, logprob: piece.logprob, bytes }];
  for (let i = 1; i < top; i++) {
    const token = `${piece.text}${i}`;
    alternatives.push({ token, logprob: piece.logprob - i, bytes: [...Buffer.from(token, 'utf8')] });
  }
  return { token: piece.text, logprob: piece.logprob, bytes, top_logprobs: alternatives };
}

function completion(sim: Sim, body: ChatCompletionRequest, plan: Plan, id: string) {
  const reasoning = plan.reasoning.map((p) => p.text).join('');
  const content = plan.content.map((p) => p.text).join('');
  const toolCalls = plan.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  const message: Record<string, unknown> = {
    role: 'assistant',
    content: plan.toolCalls.length ? null : content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    tool_calls: toolCalls,
    ...reasoningDelta(sim, reasoning),
  };
  const top = body.top_logprobs ?? 0;
  return {
    id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: sim.model,
    choices: [
      {
        index: 0,
        message,
        logprobs: body.logprobs ? { content: plan.content.map((p) => logprobsOf(p, top)) } : null,
        finish_reason: plan.finishReason,
        stop_reason: plan.stopReason,
      },
    ],
    service_tier: null,
    system_fingerprint: null,
    usage: usageOf(plan, plan.completionTokens),
    prompt_logprobs: null,
    kv_transfer_params: null,
  };
}

function usageOf(plan: Plan, completionTokens: number) {
  return {
    prompt_tokens: plan.promptTokens,
    total_tokens: plan.promptTokens + completionTokens,
    completion_tokens: completionTokens,
    prompt_tokens_details: plan.cachedTokens === undefined ? null : { cached_tokens: plan.cachedTokens },
  };
}

/** The SSE events of a streamed response, each with the tokens it carries (for pacing and usage). */
function streamEvents(
  sim: Sim,
  body: ChatCompletionRequest,
  plan: Plan,
  id: string,
  quirks: ReadonlySet<ToolCallQuirk>,
): Array<[string, number]> {
  const head = `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(sim.model)},"choices":[`;
  const continuous = body.stream_options?.continuous_usage_stats === true;
  let generated = 0;
  const events: Array<[string, number]> = [];
  const push = (choice: Record<string, unknown>, tokens: number) => {
    generated += tokens;
    const usage = continuous ? `,"usage":${JSON.stringify(usageOf(plan, generated))}` : '';
    events.push([`data: ${head}${JSON.stringify(choice)}]${usage}}\n\n`, tokens]);
  };
  const top = body.top_logprobs ?? 0;
  push({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }, 0);
  for (const piece of plan.reasoning) push({ index: 0, delta: reasoningDelta(sim, piece.text), logprobs: null, finish_reason: null }, 1);
  for (const piece of plan.content) {
    push(
      {
        index: 0,
        delta: { content: piece.text },
        logprobs: body.logprobs ? { content: [logprobsOf(piece, top)] } : null,
        finish_reason: null,
      },
      1,
    );
  }
  plan.toolCalls.forEach((call, index) => {
    const single = quirks.has('single-delta');
    const header = { id: call.id, type: 'function', index };
    push(
      {
        index: 0,
        delta: { tool_calls: [{ ...header, function: { name: call.name, arguments: single ? call.arguments : '' } }] },
        logprobs: null,
        finish_reason: null,
      },
      1,
    );
    if (single) return;
    const fragments = call.arguments.match(/.{1,7}/gs) ?? [];
    for (const fragment of fragments) {
      const delta = quirks.has('repeat-name')
        ? { ...header, function: { name: call.name, arguments: fragment } }
        : { index, function: { arguments: fragment } };
      push({ index: 0, delta: { tool_calls: [delta] }, logprobs: null, finish_reason: null }, 1);
    }
  });
  const finishReason = plan.finishReason === 'tool_calls' && quirks.has('stop-finish') ? 'stop' : plan.finishReason;
  push({ index: 0, delta: {}, logprobs: null, finish_reason: finishReason, stop_reason: plan.stopReason }, 0);
  if (body.stream_options?.include_usage) {
    events.push([`data: ${head}],"usage":${JSON.stringify(usageOf(plan, plan.completionTokens))}}\n\n`, 0]);
  }
  events.push(['data: [DONE]\n\n', 0]);
  return events;
}

/**
 * The replica dies mid-stream, as an out-of-memory kill or a lost node does: what was written
 * reaches the client, then the connection resets (`connection`) or the whole process exits
 * (`process`, for simulators run as processes of their own).
 */
function die(res: ServerResponse, mode: 'connection' | 'process'): boolean {
  setTimeout(() => {
    if (mode === 'process') process.exit(137);
    res.socket?.resetAndDestroy();
  }, 20);
  return true;
}

/** After how many events with text a fault strikes; Infinity for none. */
function faultAfter(fault: Fault | undefined): number {
  if (fault === 'drop-mid-stream' || fault === 'harmony-sse-after-text') return 2;
  if (fault === 'stall' || fault === 'malformed-sse') return 1;
  if (fault === 'harmony-sse-before-text') return 0;
  return Infinity;
}

/** The streamed answer, paced; faults cut, stall or corrupt it. False when it did not finish. */
export async function stream(
  sim: Sim,
  { res, body, plan, tokens, id, quirks, fault, signal, onTokens, started, prefillMs }: Generation,
): Promise<boolean> {
  const { state, metrics } = sim.engine;
  const events: IdsEvent[] = tokens
    ? idsStreamEvents(sim, body, plan, tokens, id, quirks)
    : streamEvents(sim, body, plan, id, quirks).map(([text, n]) => ({ text, tokens: n, visible: n > 0 }));
  await sleep(prefillMs + state.ttftMs, signal);
  if (signal.aborted) return true;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  metrics.observeTTFT((performance.now() - started) / 1000);
  const strikeAfter = faultAfter(fault);
  const death = sim.engine.takeDeath();
  if (state.itlMs <= 0 && strikeAfter === Infinity && !death) {
    let all = '';
    for (const event of events) {
      all += event.text;
      onTokens(event.tokens);
    }
    res.end(all);
    return true;
  }
  let visible = 0;
  let generated = 0;
  for (let i = 0; i < events.length; i++) {
    if (signal.aborted) return true;
    if (death && generated >= death.afterTokens) return die(res, death.mode);
    if (i > 0 && visible >= strikeAfter) {
      // Let the chunks already written reach the client before the connection drops, as a crashed engine would.
      if (fault === 'drop-mid-stream') {
        setTimeout(() => res.destroy(), 20);
        return true;
      }
      if (fault === 'stall')
        return new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(true), { once: true }));
      if (fault === 'harmony-sse-before-text' || fault === 'harmony-sse-after-text') {
        // vLLM reports an exception inside a stream as one error event, then [DONE].
        const error = { error: { message: HARMONY_ERRORS[3], type: 'InternalServerError', param: null, code: 500 } };
        res.end(`data: ${JSON.stringify(error)}\n\ndata: [DONE]\n\n`);
        return true;
      }
      res.end('data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"oo\n\ndata: [DONE]\n\n');
      return true;
    }
    const event = events[i]!;
    res.write(event.text);
    onTokens(event.tokens);
    generated += event.tokens;
    if (event.visible) visible++;
    // One inter-token interval per visible token after the first, whether or not ids were asked: Harmony's
    // control tokens cost no time in either stream, so a caller asking for ids is paced as one who does not.
    if (event.visible && visible > 1) await sleep(state.itlMs, signal);
  }
  res.end();
  return true;
}
