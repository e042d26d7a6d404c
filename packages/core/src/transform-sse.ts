import type { RequestContext } from './context.js';
import type { ErrorBody } from './errors.js';
import { createContext } from './context.js';
import { toPublicUpstreamError } from './upstream-errors.js';
import { SSE_DONE, createUpstreamSSEDecoder, encodeChunk, encodeErrorEvent, encodeRawChunk } from './sse.js';
import type { ChatCompletionChunk } from './schema.js';
import { applyChunkTransforms, applyEndTransforms, isChanged, transformsMarkChanges, type ChatTransform } from './transform.js';

const encoder = new TextEncoder();

/**
 * Runs transforms over a Chat Completions SSE byte stream, outside any framework: for
 * in-house gateways that make their own upstream call. Parses once, serializes once.
 * The output always ends cleanly: `data: [DONE]`, or one error event in the public shape.
 */
export function transformSSE(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  transforms: readonly ChatTransform[],
  ctx: RequestContext = createContext(),
): ReadableStream<Uint8Array> {
  let closed = false;
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const emit = (text: string) => {
        if (!closed) controller.enqueue(encoder.encode(text));
      };
      const output = ctx.output;
      const encode = output ? (c: ChatCompletionChunk) => output.chunk(c, ctx) : encodeChunk;
      const emitChunks = (chunks: ChatCompletionChunk[]) => {
        for (const c of chunks) emit(encode(c));
      };
      // Chunks no transform edited leave as the upstream's bytes.
      const keepBytes = !output && transformsMarkChanges(transforms);
      const emitError = (body: ErrorBody) => emit(output ? output.error(body, ctx) : encodeErrorEvent(body));
      let outcome: 'done' | 'error' | undefined;
      let tail: Promise<string> | undefined;
      const decoder = createUpstreamSSEDecoder({
        onChunk(chunk, data) {
          if (chunk.usage) ctx.usage = chunk.usage;
          for (const c of applyChunkTransforms(chunk, transforms, ctx))
            emit(keepBytes && c === chunk && !isChanged(c) ? encodeRawChunk(data) : encode(c));
        },
        onDone() {
          outcome = 'done';
          emitChunks(applyEndTransforms(transforms, ctx));
          const closing = output ? output.end(ctx) : SSE_DONE;
          if (typeof closing === 'string') emit(closing);
          else tail = closing;
        },
        onUpstreamError(body) {
          outcome = 'error';
          emitError(toPublicUpstreamError(500, body).toJSON());
        },
        onMalformed(reason) {
          outcome = 'error';
          emitError({
            error: { message: `The upstream stream broke: ${reason}.`, type: 'server_error', code: 'upstream_malformed', param: null },
          });
        },
      });
      try {
        for await (const bytes of source as AsyncIterable<Uint8Array>) {
          decoder.feed(bytes);
          if (outcome) break;
        }
        if (!outcome) decoder.end();
        if (!outcome) {
          emitError({
            error: {
              message: 'The upstream stream ended before it finished.',
              type: 'server_error',
              code: 'upstream_incomplete',
              param: null,
            },
          });
        }
      } catch (err) {
        if (!outcome) {
          emitError({
            error: {
              message: `The upstream stream failed: ${(err as Error).message ?? String(err)}.`,
              type: 'server_error',
              code: 'upstream_disconnected',
              param: null,
            },
          });
        }
      }
      if (tail) {
        try {
          emit(await tail);
        } catch {
          emitError({
            error: { message: 'The gateway failed to finish the response.', type: 'server_error', code: 'output_error', param: null },
          });
        }
      }
      if (!closed) {
        closed = true;
        controller.close();
      }
    },
    cancel() {
      closed = true;
    },
  });
}
