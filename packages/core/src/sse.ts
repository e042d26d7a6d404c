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

const CHOICES_MEMBER = ',"choices":[';
const USAGE_AFTER_CHOICES = '],"usage":';

/**
 * Parses a stream's chunks without parsing again what every chunk repeats. vLLM's chunks of
 * one stream share their text up to the choices (`{"id":…,"object":…,"created":…,"model":…,
 * "choices":[`); only the one choice and the usage differ. After one full parse, a chunk that
 * starts with that same text is read by parsing just its choice and its usage, under half
 * the bytes. Anything else (several choices, a member after usage, an error) is parsed whole,
 * and a stream that does not fit stops trying after the first miss.
 */
class ChunkReader {
  private head: string | undefined;
  private headValues: Record<string, unknown> | undefined;
  private off = false;

  learn(data: string, chunk: ChatCompletionChunk): void {
    if (this.off || this.head !== undefined || chunk.choices.length !== 1) return;
    const at = data.indexOf(CHOICES_MEMBER);
    if (at < 0) return;
    try {
      const values: unknown = JSON.parse(`${data.slice(0, at)}}`);
      if (typeof values !== 'object' || values === null || 'choices' in values) return;
      // Shared by every chunk read after: only values no transform can edit in place.
      if (Object.values(values).some((v) => typeof v === 'object' && v !== null)) return;
      this.head = data.slice(0, at + CHOICES_MEMBER.length);
      this.headValues = values as Record<string, unknown>;
    } catch {
      this.off = true;
    }
  }

  read(data: string): ChatCompletionChunk | undefined {
    const head = this.head;
    if (head === undefined || this.off || !data.startsWith(head)) return undefined;
    const last = data.length - 1;
    if (data.charCodeAt(last) !== 125 /* } */) return undefined;
    // A proper prefix of a JSON object never parses, so a wrong split below fails instead of misreading.
    const usageAt = data.lastIndexOf(USAGE_AFTER_CHOICES);
    try {
      let usage: unknown;
      let choicesEnd: number;
      if (usageAt > head.length) {
        usage = JSON.parse(data.slice(usageAt + USAGE_AFTER_CHOICES.length, last));
        choicesEnd = usageAt;
      } else if (data.charCodeAt(last - 1) === 93 /* ] */) {
        choicesEnd = last - 1;
      } else {
        return undefined;
      }
      const choice: unknown = JSON.parse(data.slice(head.length, choicesEnd));
      if (typeof choice !== 'object' || choice === null || Array.isArray(choice)) {
        this.off = true;
        return undefined;
      }
      const chunk = { ...this.headValues, choices: [choice] } as unknown as ChatCompletionChunk;
      if (usage !== undefined) chunk.usage = usage as ChatCompletionChunk['usage'];
      return chunk;
    } catch {
      this.off = true;
      return undefined;
    }
  }
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
  const decoder = new TextDecoder('utf-8');
  const reader = new ChunkReader();
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
      const fast = reader.read(data);
      if (fast) {
        handlers.onChunk(fast, data);
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
      reader.learn(data, parsed as ChatCompletionChunk);
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
      parser.feed(typeof bytes === 'string' ? bytes : decoder.decode(bytes, { stream: true }));
    },
    end() {
      if (finished) return;
      const rest = decoder.decode();
      if (rest) parser.feed(rest);
      // An event cut off before its closing blank line is still dispatched: the stream is judged by all it said.
      parser.reset({ consume: true });
    },
  };
}
