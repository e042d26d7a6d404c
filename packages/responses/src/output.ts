import {
  countTextTokens,
  loadTokenizer,
  newToolCallId,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ErrorBody,
  type Usage,
} from '@tera-gw/core';
import { newId } from './ids.js';
import type { ToolName } from './request.js';
import type { FunctionCallItem, MessageItem, OutputItem, ReasoningItem, ResponseObject, ResponseUsage } from './types.js';

/** What a response echoes of its request, and how its items are made. */
export interface ResponseSettings {
  /** The response as it stands before output: id, echoed request settings, `status: 'in_progress'`. */
  readonly base: ResponseObject;
  /** Chat tool name -> the caller's name and namespace. */
  readonly names: ReadonlyMap<string, ToolName>;
  /** Set when the caller asked for `reasoning.encrypted_content`. */
  readonly seal?: (reasoning: string) => string;
  /** The caller asked for `message.output_text.logprobs`. */
  readonly logprobs: boolean;
  /**
   * The caller asked for `reasoning.summary` (`auto`, `concise`, `detailed`): gpt-oss writes no
   * summary of its own, so the reasoning text is the summary (clients such as the AI SDK read only it).
   */
  readonly summary?: boolean;
}

function functionCall(settings: ResponseSettings, callId: string, chatName: string, args: string, status: FunctionCallItem['status']) {
  const declared = settings.names.get(chatName);
  const item: FunctionCallItem = {
    type: 'function_call',
    id: newId('fc'),
    call_id: callId,
    name: declared?.name ?? chatName,
    arguments: args,
    status,
  };
  if (declared?.namespace !== undefined) item.namespace = declared.namespace;
  return item;
}

/** A stream's reasoning item starts with no content: `content_part.added` adds its part, as the SDK's accumulator expects. */
function reasoningItem(text: string | undefined, status: ReasoningItem['status']): ReasoningItem {
  return { type: 'reasoning', id: newId('rs'), summary: [], content: text === undefined ? [] : [{ type: 'reasoning_text', text }], status };
}

/** Reasoning tokens as the upstream reported them, else counted from the reasoning text (vLLM does not report them). */
async function responseUsage(usage: Usage | undefined, reasoningText: string): Promise<ResponseUsage | null> {
  if (!usage) return null;
  let reasoningTokens = usage.completion_tokens_details?.reasoning_tokens;
  if (reasoningTokens == null) {
    if (reasoningText) {
      await loadTokenizer();
      reasoningTokens = Math.min(usage.completion_tokens, countTextTokens(reasoningText));
    } else reasoningTokens = 0;
  }
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: reasoningTokens },
    total_tokens: usage.total_tokens,
  };
}

function finalStatus(response: ResponseObject, finishReason: string | null | undefined): void {
  if (finishReason === 'length') {
    response.status = 'incomplete';
    response.incomplete_details = { reason: 'max_output_tokens' };
  } else if (finishReason === 'content_filter') {
    response.status = 'incomplete';
    response.incomplete_details = { reason: 'content_filter' };
  } else response.status = 'completed';
  response.completed_at = Math.floor(Date.now() / 1000);
}

/** A non-streamed chat completion as a Response: reasoning, then the message, then function calls, in the model's order. */
export async function completionToResponse(completion: ChatCompletion, settings: ResponseSettings): Promise<ResponseObject> {
  const response: ResponseObject = { ...settings.base, output: [] };
  const choice = completion.choices[0];
  const message = choice?.message;
  const reasoning = message?.reasoning ?? message?.reasoning_content ?? '';
  const incomplete = choice?.finish_reason === 'length';
  if (reasoning) {
    const item = reasoningItem(reasoning, 'completed');
    if (settings.summary) item.summary = [{ type: 'summary_text', text: reasoning }];
    if (settings.seal) item.encrypted_content = settings.seal(reasoning);
    response.output.push(item);
  }
  if (message?.content) {
    const text: MessageItem['content'][number] = { type: 'output_text', text: message.content, annotations: [] };
    if (settings.logprobs) text.logprobs = choice?.logprobs?.content ?? [];
    response.output.push({
      type: 'message',
      id: newId('msg'),
      role: 'assistant',
      status: incomplete ? 'incomplete' : 'completed',
      content: [text],
    });
  }
  for (const call of message?.tool_calls ?? []) {
    response.output.push(functionCall(settings, call.id, call.function.name, call.function.arguments, 'completed'));
  }
  finalStatus(response, choice?.finish_reason);
  response.usage = await responseUsage(completion.usage ?? undefined, reasoning);
  return response;
}

/** One SSE event as OpenAI writes them: an `event:` line naming the type, then the JSON. */
function sse(event: { type: string }): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

interface OpenItem {
  readonly index: number;
  readonly item: OutputItem;
  text: string;
}

/**
 * Turns the chat stream into the Responses event grammar as it arrives, one chat chunk at a
 * time: `response.created`, `response.in_progress`, then per output item `output_item.added`,
 * its deltas and `.done` events, `output_item.done`, and last `response.completed` (or
 * `response.incomplete`). Nothing is buffered but the current item's text.
 */
export class ResponsesStreamEncoder {
  readonly #settings: ResponseSettings;
  readonly #response: ResponseObject;
  #sequence = 0;
  #started = false;
  #current: OpenItem | undefined;
  readonly #calls = new Map<number, OpenItem>();
  #reasoning = '';
  #finishReason: string | null | undefined;

  constructor(settings: ResponseSettings) {
    this.#settings = settings;
    this.#response = { ...settings.base, output: [] };
  }

  #event(event: Record<string, unknown> & { type: string }): string {
    event.sequence_number = this.#sequence++;
    return sse(event);
  }

  #snapshot(): ResponseObject {
    return { ...this.#response, output: this.#response.output.map((item) => ({ ...item })) };
  }

  #start(): string {
    this.#started = true;
    const snapshot = this.#snapshot();
    return (
      this.#event({ type: 'response.created', response: snapshot }) + this.#event({ type: 'response.in_progress', response: snapshot })
    );
  }

  #open(item: OutputItem): { open: OpenItem; text: string } {
    const open: OpenItem = { index: this.#response.output.length, item, text: '' };
    this.#response.output.push(item);
    this.#current = open;
    let text = this.#event({ type: 'response.output_item.added', output_index: open.index, item: { ...item } });
    if (item.type === 'message') {
      text += this.#event({
        type: 'response.content_part.added',
        item_id: item.id,
        output_index: open.index,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      });
    } else if (item.type === 'reasoning') {
      text += this.#event({
        type: 'response.content_part.added',
        item_id: item.id,
        output_index: open.index,
        content_index: 0,
        part: { type: 'reasoning_text', text: '' },
      });
      if (this.#settings.summary)
        text += this.#event({
          type: 'response.reasoning_summary_part.added',
          item_id: item.id,
          output_index: open.index,
          summary_index: 0,
          part: { type: 'summary_text', text: '' },
        });
    }
    return { open, text };
  }

  #close(status: 'completed' | 'incomplete'): string {
    const open = this.#current;
    if (!open) return '';
    this.#current = undefined;
    const item = open.item;
    const base = { item_id: item.id, output_index: open.index };
    let text = '';
    if (item.type === 'reasoning') {
      item.content = [{ type: 'reasoning_text', text: open.text }];
      item.status = status;
      if (this.#settings.seal) item.encrypted_content = this.#settings.seal(open.text);
      text += this.#event({ type: 'response.reasoning_text.done', ...base, content_index: 0, text: open.text });
      text += this.#event({ type: 'response.content_part.done', ...base, content_index: 0, part: item.content[0] });
      if (this.#settings.summary) {
        item.summary = [{ type: 'summary_text', text: open.text }];
        text += this.#event({ type: 'response.reasoning_summary_text.done', ...base, summary_index: 0, text: open.text });
        text += this.#event({ type: 'response.reasoning_summary_part.done', ...base, summary_index: 0, part: item.summary[0] });
      }
    } else if (item.type === 'message') {
      const part: MessageItem['content'][number] = { type: 'output_text', text: open.text, annotations: [] };
      if (this.#settings.logprobs) part.logprobs = item.content[0]?.logprobs ?? [];
      item.content = [part];
      item.status = status;
      text += this.#event({ type: 'response.output_text.done', ...base, content_index: 0, text: open.text, logprobs: part.logprobs ?? [] });
      text += this.#event({ type: 'response.content_part.done', ...base, content_index: 0, part });
    } else {
      item.arguments = open.text;
      item.status = status;
      text += this.#event({ type: 'response.function_call_arguments.done', ...base, name: item.name, arguments: open.text });
    }
    return text + this.#event({ type: 'response.output_item.done', output_index: open.index, item: { ...item } });
  }

  /** The SSE text for one (transformed) chat chunk. */
  chunk(chunk: ChatCompletionChunk): string {
    let out = this.#started ? '' : this.#start();
    const choice = chunk.choices[0];
    if (!choice) return out;
    const delta = choice.delta;
    const reasoning = delta.reasoning ?? delta.reasoning_content;
    if (reasoning) {
      if (this.#current?.item.type !== 'reasoning') {
        out += this.#close('completed');
        out += this.#open(reasoningItem(undefined, 'in_progress')).text;
      }
      const open = this.#current!;
      open.text += reasoning;
      this.#reasoning += reasoning;
      out += this.#event({
        type: 'response.reasoning_text.delta',
        item_id: open.item.id,
        output_index: open.index,
        content_index: 0,
        delta: reasoning,
      });
      if (this.#settings.summary)
        out += this.#event({
          type: 'response.reasoning_summary_text.delta',
          item_id: open.item.id,
          output_index: open.index,
          summary_index: 0,
          delta: reasoning,
        });
    }
    if (delta.content) {
      if (this.#current?.item.type !== 'message') {
        out += this.#close('completed');
        const item: MessageItem = { type: 'message', id: newId('msg'), role: 'assistant', status: 'in_progress', content: [] };
        out += this.#open(item).text;
      }
      const open = this.#current!;
      open.text += delta.content;
      const logprobs = this.#settings.logprobs ? (choice.logprobs?.content ?? []) : [];
      if (this.#settings.logprobs && logprobs.length) {
        const message = open.item as MessageItem;
        const kept = (message.content[0] ??= { type: 'output_text', text: '', annotations: [], logprobs: [] });
        (kept.logprobs ??= []).push(...logprobs);
      }
      out += this.#event({
        type: 'response.output_text.delta',
        item_id: open.item.id,
        output_index: open.index,
        content_index: 0,
        delta: delta.content,
        logprobs,
      });
    }
    for (const call of delta.tool_calls ?? []) {
      let open = this.#calls.get(call.index);
      if (!open) {
        out += this.#close('completed');
        const item = functionCall(this.#settings, call.id ?? newToolCallId(), call.function?.name ?? '', '', 'in_progress');
        const opened = this.#open(item);
        open = opened.open;
        this.#calls.set(call.index, open);
        out += opened.text;
      }
      const fragment = call.function?.arguments;
      if (fragment) {
        open.text += fragment;
        out += this.#event({
          type: 'response.function_call_arguments.delta',
          item_id: open.item.id,
          output_index: open.index,
          delta: fragment,
        });
      }
    }
    if (choice.finish_reason) this.#finishReason = choice.finish_reason;
    return out;
  }

  /** The stream ended normally: every open item closes, then `response.completed` or `response.incomplete`. */
  async end(usage: Usage | undefined): Promise<{ text: string; response: ResponseObject }> {
    let out = this.#started ? '' : this.#start();
    out += this.#close(this.#finishReason === 'length' ? 'incomplete' : 'completed');
    finalStatus(this.#response, this.#finishReason);
    this.#response.usage = await responseUsage(usage, this.#reasoning);
    const response = this.#snapshot();
    out += this.#event({ type: response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', response });
    return { text: out, response };
  }

  /** The stream failed after its first byte: an `error` event, then `response.failed`. */
  error(body: ErrorBody): string {
    let out = this.#started ? '' : this.#start();
    const { message, code, param } = body.error;
    out += this.#event({ type: 'error', code: code ?? body.error.type, message, param });
    this.#response.status = 'failed';
    this.#response.error = { code: code ?? 'server_error', message };
    return out + this.#event({ type: 'response.failed', response: this.#snapshot() });
  }
}
