import type { RequestContext } from './context.js';
import { createContext } from './context.js';
import { createChunkPipeline, errorEventText } from './pipeline.js';
import type { ChatTransform } from './transform.js';
import { streamFailureError } from './upstream-errors.js';

const encoder = new TextEncoder();

/**
 * Runs transforms over a Chat Completions SSE byte stream, outside any framework: for
 * in-house gateways that make their own upstream call. A thin WHATWG-stream wrapper around
 * `createChunkPipeline`, the same pipeline the gateway's relay drives: parses once, serializes
 * once, and always ends cleanly, with `data: [DONE]` or one error event in the public shape.
 */
export function transformSSE(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  transforms: readonly ChatTransform[],
  ctx: RequestContext = createContext(),
): ReadableStream<Uint8Array> {
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const write = (text: string) => {
        if (!cancelled && text) controller.enqueue(encoder.encode(text));
      };
      const closed = new Promise<void>((resolve) => {
        const pipeline = createChunkPipeline({
          ctx,
          transforms,
          write,
          onFailure: (failure) => {
            write(errorEventText(ctx, streamFailureError(failure)));
            resolve();
          },
          onDone: resolve,
        });
        void (async () => {
          try {
            for await (const bytes of source as AsyncIterable<Uint8Array>) {
              if (cancelled || pipeline.finished) break;
              pipeline.feed(bytes);
            }
            pipeline.end();
          } catch (err) {
            pipeline.fail({ kind: 'broken', cause: 'reset', reason: `the upstream stream failed: ${String(err)}` });
          }
          if (cancelled) resolve();
        })();
      });
      await closed;
      if (!cancelled) controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
}
