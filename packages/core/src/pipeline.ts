import type { RequestContext } from './context.js';
import type { TeraError } from './errors.js';
import type { ChatCompletionChunk } from './schema.js';
import {
  SSE_DONE,
  createUpstreamSSEDecoder,
  encodeChunk,
  encodeErrorEvent,
  encodeRawChunk,
  withoutUsageMember,
  type UpstreamSSEDecoder,
} from './sse.js';
import { applyChunkTransforms, applyEndTransforms, isChanged, transformsMarkChanges, type ChatTransform } from './transform.js';
import { ModelOutputFailure, type StreamFailure } from './upstream-errors.js';

export interface ChunkPipelineOptions {
  ctx: RequestContext;
  /** Where the SSE text for the caller goes, as it is produced. */
  write: (text: string) => void;
  /** @defaultValue the context's response transforms */
  transforms?: readonly ChatTransform[];
  /**
   * The gateway asked the upstream for usage on every chunk, to bill a stream however it ends;
   * what the caller asked for (`stream_options`) is what it sees. Absent: usage passes as sent.
   */
  callerUsage?: { include: boolean; continuous: boolean };
  /** An earlier attempt of this response already sent the role chunk: this one's is dropped. */
  continuing?: boolean;
  /** Each upstream chunk, before the transforms (usage meters, the response's id). */
  observe?: (chunk: ChatCompletionChunk) => void;
  /** A finish before any text, other than `length`, is the model failing (an empty completion). */
  emptyCompletion?: boolean;
  /** Checks the whole content when a normal finish arrives (structured output); a failure ends the stream. */
  checkContent?: (content: string) => ModelOutputFailure | undefined;
  /** The stream failed: the pipeline stops, and its owner decides (retry it, or end it with `errorEventText`). */
  onFailure: (failure: StreamFailure) => void;
  /** `[DONE]` came and everything that closes the stream was written. */
  onDone: () => void;
  /** Largest single SSE event accepted. */
  maxEventBytes?: number;
  /** Members the gateway asked for and the caller did not (`token_ids`), cut from the upstream's bytes kept as they are. */
  cutMembers?: (data: string) => string;
  /**
   * Chunks that carry nothing for the caller (an empty delta, no finish): the control tokens a
   * replica reports when asked for token ids. Observed, then dropped.
   */
  dropEmptyDeltas?: boolean;
}

export interface ChunkPipeline {
  /** Bytes or text as they arrive; multibyte characters split across reads are handled. */
  feed(data: string | Uint8Array): void;
  /** The byte stream ended: a failure unless `[DONE]` came first. */
  end(): void;
  /** Stops with a failure seen outside the bytes (a reset, a timeout). No-op once finished. */
  fail(failure: StreamFailure): void;
  /** Text (reasoning, content, a tool call) came from the upstream: a failure can no longer be hidden by a retry. */
  readonly sawText: boolean;
  /** `[DONE]` was handled or a failure reported: nothing more is fed or written. */
  readonly finished: boolean;
}

type Delta = { content?: unknown; reasoning?: unknown; reasoning_content?: unknown; tool_calls?: unknown[] | null; role?: unknown };
const carriesText = (delta: Delta | undefined) =>
  !!delta && !!(delta.content || delta.reasoning || delta.reasoning_content || delta.tool_calls?.length);

function isEmptyDelta(delta: object | undefined): boolean {
  if (!delta) return true;
  for (const key in delta) if ((delta as Record<string, unknown>)[key] !== undefined) return false;
  return true;
}

/** The SSE text that ends a stream with an error, in the response's own shape (chat, or Responses events). */
export function errorEventText(ctx: RequestContext, error: TeraError): string {
  return ctx.output ? ctx.output.error(error.toJSON(), ctx) : encodeErrorEvent(error.toJSON());
}

/**
 * The one chat-stream pipeline, in eventsource-parser's shape: a plain factory over callbacks,
 * fed bytes. It decodes the upstream's SSE once, runs the response transforms, keeps the bytes of
 * chunks no transform edited, cuts the usage the caller did not ask for, runs the end transforms,
 * writes through the context's output format, and reports every way the stream can fail as one
 * `StreamFailure`, which `streamFailureError` maps to the documented error shape. The adapter's
 * relay and `transformSSE` both drive it.
 */
export function createChunkPipeline(options: ChunkPipelineOptions): ChunkPipeline {
  const { ctx, write, observe, checkContent, callerUsage } = options;
  const transforms = options.transforms ?? ctx.responseTransforms;
  const output = ctx.output;
  const encode = output ? (c: ChatCompletionChunk) => output.chunk(c, ctx) : encodeChunk;
  const keepBytes = !output && !ctx.requestedModel && transformsMarkChanges(transforms);
  let sawText = false;
  let finished = false;
  let content = '';

  const fail = (failure: StreamFailure) => {
    if (finished) return;
    finished = true;
    options.onFailure(failure);
  };

  /** One transformed chunk out: the upstream's own bytes when nothing edited it, else serialized. */
  const emit = (c: ChatCompletionChunk, upstream: ChatCompletionChunk, data: string, cutUsage: boolean) => {
    const choice = c.choices[0];
    if (checkContent && choice) {
      content += typeof choice.delta?.content === 'string' ? choice.delta.content : '';
      // Structured output is checked whole, before its normal finish goes out.
      if (choice.finish_reason && choice.finish_reason !== 'length' && !choice.delta?.tool_calls?.length) {
        const failure = checkContent(content);
        if (failure) throw failure;
      }
    }
    if (ctx.requestedModel) c.model = ctx.requestedModel;
    // A usage-only chunk is never kept: usage meters add to it.
    if (keepBytes && c === upstream && c.choices.length > 0 && !isChanged(c)) {
      const kept = cutUsage ? withoutUsageMember(data) : data;
      if (kept !== undefined) return write(encodeRawChunk(options.cutMembers ? options.cutMembers(kept) : kept));
    }
    write(encode(c));
  };

  const onChunk = (chunk: ChatCompletionChunk, data: string) => {
    if (finished) return;
    const choice = chunk.choices[0];
    if (choice) {
      if (carriesText(choice.delta)) sawText = true;
      else if (options.continuing && !sawText && (choice.delta as Delta | undefined)?.role && !choice.finish_reason) return;
      if (options.emptyCompletion && choice.finish_reason && !sawText && choice.finish_reason !== 'length')
        return fail({
          kind: 'model',
          failure: new ModelOutputFailure('empty_completion', `finish_reason ${choice.finish_reason} with no text`),
        });
    }
    observe?.(chunk);
    if (chunk.usage) ctx.usage = chunk.usage;
    if (options.dropEmptyDeltas && choice && !choice.finish_reason && !choice.logprobs && isEmptyDelta(choice.delta)) return;
    if (callerUsage && chunk.choices.length === 0 && chunk.usage && !callerUsage.include) return;
    // Set to undefined rather than deleted: JSON.stringify drops it, and the object keeps its shape.
    const cutUsage = !!callerUsage && !!chunk.usage && chunk.choices.length > 0 && !callerUsage.continuous;
    if (cutUsage) chunk.usage = undefined;
    try {
      for (const c of applyChunkTransforms(chunk, transforms, ctx)) emit(c, chunk, data, cutUsage);
    } catch (err) {
      fail(err instanceof ModelOutputFailure ? { kind: 'model', failure: err } : { kind: 'transform', error: err });
    }
  };

  /** `[DONE]` came: what the upstream does with its connection afterwards no longer matters. */
  let closing = false;
  const onDone = () => {
    if (finished) return;
    closing = true;
    let tail: string | Promise<string>;
    try {
      for (const c of applyEndTransforms(transforms, ctx)) write(encode(c));
      tail = output ? output.end(ctx) : SSE_DONE;
    } catch (err) {
      return fail({ kind: 'transform', error: err });
    }
    const close = (text: string) => {
      if (finished) return;
      finished = true;
      write(text);
      options.onDone();
    };
    if (typeof tail === 'string') return close(tail);
    // The output format stores something first (a stored response): the stream waits for it.
    tail.then(close, (err: unknown) => fail({ kind: 'transform', error: err }));
  };

  const decoder: UpstreamSSEDecoder = createUpstreamSSEDecoder(
    {
      onChunk,
      onDone,
      onUpstreamError: (body) => fail({ kind: 'upstream', body }),
      onMalformed: (reason) => fail({ kind: 'malformed', reason }),
    },
    options.maxEventBytes === undefined ? {} : { maxEventBytes: options.maxEventBytes },
  );
  let done = false;
  return {
    feed(data) {
      if (!finished) decoder.feed(data);
    },
    end() {
      if (finished || done || closing) return;
      done = true;
      decoder.end();
      if (!finished && !closing) fail({ kind: 'broken', cause: 'reset', reason: 'the upstream ended the stream before [DONE]' });
    },
    fail(failure) {
      if (!closing) fail(failure);
    },
    get sawText() {
      return sawText;
    },
    get finished() {
      return finished;
    },
  };
}
