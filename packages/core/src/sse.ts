import { createParser, type EventSourceParser } from 'eventsource-parser';
import type { ChatCompletionChunk } from './schema.js';
import type { ErrorBody } from './errors.js';

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  // Reverse proxies (nginx) must not buffer the stream.
  'X-Accel-Buffering': 'no',
};

export const SSE_DONE = 'data: [DONE]\n\n';

export function encodeChunk(chunk: ChatCompletionChunk): string {
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

/** An unedited upstream chunk, as the upstream's own JSON text. */
export const encodeRawChunk = (data: string): string => `data: ${data}\n\n`;

const USAGE_MEMBER = ',"usage":';
const USAGE_VALUE = /^(?:null|\{[\w":,{}. +-]*\})$/;

/**
 * The chunk's JSON text without its top-level `usage` member, for streams where the gateway
 * asked vLLM for usage on every chunk and the caller did not. vLLM writes compact JSON with
 * `usage` last; anything else (a string value after it, unbalanced braces) answers undefined
 * and the chunk is serialized instead. An unescaped `,"usage":` cannot occur inside a string.
 */
export function withoutUsageMember(data: string): string | undefined {
  const at = data.lastIndexOf(USAGE_MEMBER);
  if (at < 0 || data.charCodeAt(data.length - 1) !== 125 /* } */) return undefined;
  const value = data.slice(at + USAGE_MEMBER.length, -1);
  if (!USAGE_VALUE.test(value)) return undefined;
  let depth = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 123) depth++;
    // The value's braces close only at its end: `{..},"next":{..}` is two members, not one.
    else if (c === 125 && --depth === 0 && i !== value.length - 1) return undefined;
    if (depth < 0) return undefined;
  }
  if (depth !== 0) return undefined;
  return `${data.slice(0, at)}}`;
}

export function encodeErrorEvent(body: ErrorBody): string {
  return `data: ${JSON.stringify(body)}\n\n`;
}

export interface UpstreamSSEHandlers {
  /** A parsed `chat.completion.chunk`; `data` is its original JSON text. */
  onChunk(chunk: ChatCompletionChunk, data: string): void;
  /** `data: [DONE]`. */
  onDone(): void;
  /** The upstream sent an error event (`data: {"error": ...}` or vLLM's flat `{"object":"error"}`). */
  onUpstreamError(body: unknown): void;
  /** Data that is not JSON, or an event line longer than the buffer allows. */
  onMalformed(reason: string): void;
}

export interface UpstreamSSEDecoder {
  /** Feed bytes as they arrive; multibyte characters split across chunks are handled. */
  feed(bytes: Uint8Array | string): void;
  /** The byte stream ended; flushes what is buffered. */
  end(): void;
}

/** Largest single SSE event accepted from upstream: far above any chunk vLLM sends, and a bound for hostile input. */
export const DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024;

/**
 * Parses a Chat Completions SSE stream (eventsource-parser underneath) into chunks, once.
 * Comments, `event:` names and ids are ignored, as OpenAI's clients do.
 */
export function createUpstreamSSEDecoder(handlers: UpstreamSSEHandlers, options: { maxEventBytes?: number } = {}): UpstreamSSEDecoder {
  // Made on the first bytes fed: a caller that feeds strings (a stream with setEncoding) never pays for one per stream.
  let decoder: InstanceType<typeof TextDecoder> | undefined;
  let finished = false;
  const parser: EventSourceParser = createParser({
    maxBufferSize: options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES,
    onEvent(event) {
      if (finished) return;
      const data = event.data;
      if (data === '[DONE]') {
        finished = true;
        handlers.onDone();
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch {
        finished = true;
        handlers.onMalformed('upstream sent an SSE event that is not JSON');
        return;
      }
      if (typeof parsed !== 'object' || parsed === null) {
        finished = true;
        handlers.onMalformed('upstream sent an SSE event that is not a JSON object');
        return;
      }
      const obj = parsed as { error?: unknown; object?: unknown; choices?: unknown };
      if (obj.error !== undefined || obj.object === 'error') {
        finished = true;
        handlers.onUpstreamError(parsed);
        return;
      }
      if (!Array.isArray(obj.choices)) {
        finished = true;
        handlers.onMalformed('upstream sent an SSE event without `choices`');
        return;
      }
      handlers.onChunk(parsed as ChatCompletionChunk, data);
    },
    onError(error) {
      if (finished) return;
      finished = true;
      handlers.onMalformed(`upstream SSE could not be parsed: ${error.message}`);
    },
  });
  return {
    feed(bytes) {
      if (finished) return;
      parser.feed(typeof bytes === 'string' ? bytes : (decoder ??= new TextDecoder('utf-8')).decode(bytes, { stream: true }));
    },
    end() {
      if (finished) return;
      const rest = decoder?.decode();
      if (rest) parser.feed(rest);
      // An event cut off before its closing blank line is still dispatched: the stream is judged by all it said.
      parser.reset({ consume: true });
    },
  };
}
