import type { ChatCompletionRequest } from '@tera-gw/core';
import type { ToolCallQuirk } from './options.js';
import type { Plan } from './plan.js';
import type { Sim } from './sim.js';
import { idsOf, type Step } from './steps.js';

/** A generation asked with `return_token_ids`: the prompt's ids, and the generated tokens as steps (cut to the budget). */
export interface TokenView {
  prompt: number[];
  steps: Step[];
  /** The stop token generated last (`<|return|>`, `<|call|>`), if the budget let the answer end. */
  end: number | undefined;
}

/** One SSE event and whether it carries text a caller sees (the faults cut after a number of those). */
export interface IdsEvent {
  text: string;
  tokens: number;
  visible: boolean;
}

function reasoningField(sim: Sim, text: string): Record<string, string> {
  const field = sim.reasoningField;
  return field === 'both' ? { reasoning: text, reasoning_content: text } : { [field]: text };
}

/** The whole answer read from its tokens, as vLLM's Harmony parser gives it: reasoning, content, tool calls with their ids. */
export function messageOfTokens(sim: Sim, plan: Plan, view: TokenView): Record<string, unknown> {
  let reasoning = '';
  let content = '';
  const args = new Map<number, string>();
  for (const step of view.steps) {
    if (step.kind === 'reasoning') reasoning += step.text;
    else if (step.kind === 'content') content += step.text;
    else if (step.kind === 'call') args.set(step.call!, '');
    else if (step.kind === 'args') args.set(step.call!, (args.get(step.call!) ?? '') + step.text);
  }
  const toolCalls = [...args].map(([i, text]) => {
    const call = plan.toolCalls[i]!;
    return { id: call.id, type: 'function', function: { name: call.name, arguments: text } };
  });
  return {
    role: 'assistant',
    content: toolCalls.length ? null : content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    tool_calls: toolCalls,
    ...reasoningField(sim, reasoning),
  };
}

/**
 * The stream of a generation asked with `return_token_ids`: one chunk per generated token, its
 * id in `token_ids`; control tokens and channel headers arrive on chunks with an empty delta;
 * `prompt_token_ids` on the first chunk.
 */
export function idsStreamEvents(
  sim: Sim,
  body: ChatCompletionRequest,
  plan: Plan,
  view: TokenView,
  id: string,
  quirks: ReadonlySet<ToolCallQuirk>,
): IdsEvent[] {
  const head = `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(sim.model)}`;
  const continuous = body.stream_options?.continuous_usage_stats === true;
  const completionTokens = idsOf(view.steps, view.end).length;
  const usage = (generated: number) =>
    JSON.stringify({
      prompt_tokens: view.prompt.length,
      total_tokens: view.prompt.length + generated,
      completion_tokens: generated,
      prompt_tokens_details: plan.cachedTokens === undefined ? null : { cached_tokens: plan.cachedTokens },
    });
  let generated = 0;
  const events: IdsEvent[] = [];
  const push = (choice: Record<string, unknown>, ids: readonly number[], visible: boolean, extra = '') => {
    generated += ids.length;
    const usageMember = continuous ? `,"usage":${usage(generated)}` : '';
    events.push({
      text: `data: ${head}${extra},"choices":[${JSON.stringify({ ...choice, token_ids: ids })}]${usageMember}}\n\n`,
      tokens: ids.length,
      visible,
    });
  };
  const plain = (delta: Record<string, unknown>) => ({ index: 0, delta, logprobs: null, finish_reason: null });
  push(plain({ role: 'assistant', content: '' }), [], false, `,"prompt_token_ids":${JSON.stringify(view.prompt)}`);
  const single = quirks.has('single-delta');
  const skipEmpty = quirks.has('ids-skip-empty');
  for (const step of view.steps) {
    if (step.kind === 'control') {
      if (skipEmpty) generated += step.ids.length;
      else push(plain({}), step.ids, false);
    } else if (step.kind === 'reasoning') push(plain(reasoningField(sim, step.text)), step.ids, true);
    else if (step.kind === 'content') push(plain({ content: step.text }), step.ids, true);
    else if (step.kind === 'call') {
      const call = plan.toolCalls[step.call!]!;
      const whole = single
        ? view.steps
            .filter((s) => s.kind === 'args' && s.call === step.call)
            .map((s) => s.text)
            .join('')
        : '';
      push(
        plain({ tool_calls: [{ id: call.id, type: 'function', index: step.call, function: { name: call.name, arguments: whole } }] }),
        step.ids,
        true,
      );
    } else if (single) {
      if (skipEmpty) generated += step.ids.length;
      else push(plain({}), step.ids, false);
    } else {
      const call = plan.toolCalls[step.call!]!;
      const delta = quirks.has('repeat-name')
        ? { id: call.id, type: 'function', index: step.call, function: { name: call.name, arguments: step.text } }
        : { index: step.call, function: { arguments: step.text } };
      push(plain({ tool_calls: [delta] }), step.ids, true);
    }
  }
  const finishReason = plan.finishReason === 'tool_calls' && quirks.has('stop-finish') ? 'stop' : plan.finishReason;
  push(
    { index: 0, delta: {}, logprobs: null, finish_reason: finishReason, stop_reason: plan.stopReason },
    view.end === undefined ? [] : [view.end],
    false,
  );
  if (body.stream_options?.include_usage)
    events.push({ text: `data: ${head},"choices":[],"usage":${usage(completionTokens)}}\n\n`, tokens: 0, visible: false });
  events.push({ text: 'data: [DONE]\n\n', tokens: 0, visible: false });
  return events;
}
