import type { ChatCompletion, ChatCompletionChunk, Usage } from '@tera-gw/core';

interface ChoiceState {
  content: string;
  reasoning: string;
  hasContent: boolean;
  hasReasoning: boolean;
  refusal: string | null;
  finishReason: string | null;
  toolCalls: Map<number, { id: string; name: string; arguments: string }>;
}

/**
 * Turns a stream of chunks into the final `ChatCompletion`, for client code: content,
 * reasoning (from `reasoning` or `reasoning_content`), refusal and tool-call fragments are
 * concatenated, by index. (The openai SDK's stream helper keeps only the last reasoning fragment.)
 */
export class ChatCompletionAccumulator {
  private id = '';
  private created = 0;
  private model = '';
  private usage: Usage | undefined;
  private readonly choices = new Map<number, ChoiceState>();

  /** A chunk as this gateway's types or the openai SDK's (`ChatCompletionChunk` of either) describe it. */
  push(input: ChatCompletionChunk | { id: string; created: number; model: string; choices: readonly unknown[] }): this {
    const chunk = input as ChatCompletionChunk;
    this.id ||= chunk.id;
    this.created ||= chunk.created;
    this.model ||= chunk.model;
    if (chunk.usage) this.usage = chunk.usage;
    for (const choice of chunk.choices) {
      let state = this.choices.get(choice.index);
      if (!state) {
        state = {
          content: '',
          reasoning: '',
          hasContent: false,
          hasReasoning: false,
          refusal: null,
          finishReason: null,
          toolCalls: new Map(),
        };
        this.choices.set(choice.index, state);
      }
      const d = choice.delta;
      if (typeof d.content === 'string') {
        state.content += d.content;
        state.hasContent = true;
      }
      const reasoning = d.reasoning ?? d.reasoning_content;
      if (typeof reasoning === 'string') {
        state.reasoning += reasoning;
        state.hasReasoning = true;
      }
      const refusal = (d as { refusal?: string | null }).refusal;
      if (typeof refusal === 'string') state.refusal = (state.refusal ?? '') + refusal;
      for (const t of d.tool_calls ?? []) {
        let call = state.toolCalls.get(t.index);
        if (!call) {
          call = { id: '', name: '', arguments: '' };
          state.toolCalls.set(t.index, call);
        }
        if (t.id) call.id ||= t.id;
        if (t.function?.name) call.name ||= t.function.name;
        if (t.function?.arguments) call.arguments += t.function.arguments;
      }
      if (choice.finish_reason) state.finishReason = choice.finish_reason;
    }
    return this;
  }

  result(): ChatCompletion {
    const choices = [...this.choices.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([index, s]) => {
        const toolCalls = [...s.toolCalls.entries()]
          .sort((a, b) => a[0] - b[0])
          .map(([, c]) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));
        const message: ChatCompletion['choices'][number]['message'] = {
          role: 'assistant',
          content: s.hasContent && (s.content !== '' || !toolCalls.length) ? s.content : null,
        };
        if (s.hasReasoning) message.reasoning = s.reasoning;
        if (s.refusal !== null) message.refusal = s.refusal;
        if (toolCalls.length) message.tool_calls = toolCalls;
        return { index, message, logprobs: null, finish_reason: s.finishReason };
      });
    const out: ChatCompletion = { id: this.id, object: 'chat.completion', created: this.created, model: this.model, choices };
    if (this.usage) out.usage = this.usage;
    return out;
  }
}

/** All chunks at once. */
export function accumulateChunks(chunks: Iterable<ChatCompletionChunk>): ChatCompletion {
  const acc = new ChatCompletionAccumulator();
  for (const c of chunks) acc.push(c);
  return acc.result();
}
