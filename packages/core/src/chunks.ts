import { randomBytes } from 'node:crypto';
import type { ChatCompletionChunk } from './schema.js';

/** The reasoning fields of a message or delta as vLLM releases send them (PROTOCOL.md): `reasoning`, or `reasoning_content` before 0.17. */
export interface ReasoningFields {
  reasoning?: string | null;
  reasoning_content?: string | null;
}

/** A chunk of the same response as `base` (id, created, model) with one choice carrying `delta`. */
export function deriveChunk(
  base: ChatCompletionChunk,
  index: number,
  delta: Record<string, unknown>,
  finishReason: string | null = null,
): ChatCompletionChunk {
  return {
    id: base.id,
    object: 'chat.completion.chunk',
    created: base.created,
    model: base.model,
    choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
  };
}

// Ids callers see must reveal neither the process nor the traffic: random, from a pooled buffer.
let pool = Buffer.alloc(0);
let offset = 0;

/** A tool-call id in vLLM's style (`chatcmpl-tool-` and 32 hex digits), for calls a repair creates. */
export function newToolCallId(): string {
  if (offset + 16 > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + 16);
  offset += 16;
  return `chatcmpl-tool-${hex}`;
}
