import {
  context,
  markChanged,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatTransform,
  type Middleware,
  type ReasoningFields,
  parseOptions,
} from '@tera-gw/core';
import { reasoningOptionsSchema, type ReasoningOptions } from './options.js';

/** One text out of either field; when both are present they carry the same text (vLLM's alias), so `reasoning` wins. */
function takeReasoning(target: ReasoningFields): string | undefined {
  const text = target.reasoning ?? target.reasoning_content ?? undefined;
  delete target.reasoning;
  delete target.reasoning_content;
  return text ?? undefined;
}

function place(target: ReasoningFields, text: string, output: 'reasoning' | 'reasoning_content' | 'both' | 'none'): void {
  if (output === 'reasoning' || output === 'both') target.reasoning = text;
  if (output === 'reasoning_content' || output === 'both') target.reasoning_content = text;
}

/** The pure transform, for in-house gateways (`transformSSE(stream, [reasoningTransform()])`). Stateless. */
export function reasoningTransform(options: ReasoningOptions = {}): ChatTransform {
  const { output, upstreamField } = parseOptions(reasoningOptionsSchema, options, 'reasoningTransform()');
  return {
    name: 'reasoning',
    marksChanges: true,
    request(body: ChatCompletionRequest) {
      for (const m of body.messages) {
        if (m.role !== 'assistant' || (m.reasoning == null && m.reasoning_content == null)) continue;
        const text = takeReasoning(m);
        if (text !== undefined && upstreamField !== 'drop') m[upstreamField] = text;
      }
      return body;
    },
    completion(body: ChatCompletion) {
      for (const choice of body.choices) {
        const message = choice.message as ReasoningFields;
        if (message.reasoning === undefined && message.reasoning_content === undefined) continue;
        const text = takeReasoning(message);
        if (text !== undefined && output !== 'none') place(message, text, output);
      }
      return body;
    },
    chunk(chunk: ChatCompletionChunk) {
      for (const choice of chunk.choices) {
        const delta = choice.delta as ReasoningFields;
        if (delta.reasoning == null && delta.reasoning_content == null) continue;
        // Already in the field the caller reads (vLLM 0.17+, default output): nothing to move.
        if (output === 'reasoning' && delta.reasoning_content === undefined) continue;
        markChanged(chunk);
        const text = takeReasoning(delta);
        if (text !== undefined && output !== 'none') place(delta, text, output);
      }
      if (output === 'none' && isEmptyDelta(chunk)) return [];
      return [chunk];
    },
  };
}

/** A chunk left with nothing for the caller once hidden reasoning is removed. */
function isEmptyDelta(chunk: ChatCompletionChunk): boolean {
  if (chunk.usage || chunk.choices.length !== 1) return false;
  const choice = chunk.choices[0]!;
  if (choice.finish_reason != null || choice.logprobs != null) return false;
  for (const key in choice.delta) if ((choice.delta as Record<string, unknown>)[key] != null) return false;
  return true;
}

/** Registers the reasoning transform on the request's context, on both sides. */
export function reasoning(options: ReasoningOptions = {}): Middleware {
  const transform = reasoningTransform(parseOptions(reasoningOptionsSchema, options, 'reasoning()'));
  return function reasoningStage(req, res, next) {
    const ctx = context(req, res);
    ctx.requestTransforms.push(transform);
    ctx.responseTransforms.push(transform);
    next();
  };
}
