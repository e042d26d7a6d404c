import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpstreamFault } from '@tera-gw/circuit-breaker';
import {
  SSE_DONE,
  TeraError,
  applyChunkTransforms,
  applyCompletionTransforms,
  applyEndTransforms,
  createUpstreamSSEDecoder,
  encodeChunk,
  encodeErrorEvent,
  recordEvent,
  sendJSON,
  startEventStream,
  toPublicUpstreamError,
  type ChatCompletion,
  type ChatCompletionChunk,
  type RequestContext,
} from '@tera-gw/core';
import type { AdapterEvents } from './adapter.js';
import { ClientGone, readResponse, type Timeouts } from './attempt.js';
import type { Replica } from './replica.js';

/** An attempt failed before any byte reached the client: try another replica. */
export class Retryable extends Error {
  constructor(readonly fault: UpstreamFault) {
    super(fault.message);
  }
}

export interface RelayDeps {
  timeouts: Timeouts;
  events: EventEmitter<AdapterEvents>;
}

export async function relayCompletion(
  { timeouts }: RelayDeps,
  response: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  deadline: number,
): Promise<void> {
  let completion: ChatCompletion;
  try {
    const text = await readResponse(response, timeouts.idleMs, deadline, ctx.signal);
    completion = JSON.parse(text.toString('utf8')) as ChatCompletion;
    if (!completion || !Array.isArray(completion.choices))
      throw new UpstreamFault('malformed', 'the replica answered a body that is not a chat completion');
  } catch (err) {
    if (err instanceof ClientGone) throw err;
    throw new Retryable(
      err instanceof UpstreamFault ? err : new UpstreamFault('malformed', 'the replica answered a body that is not JSON'),
    );
  }
  if (completion.usage) ctx.usage = completion.usage;
  let out: ChatCompletion;
  try {
    out = applyCompletionTransforms(completion, ctx);
  } catch (err) {
    throw err instanceof TeraError
      ? err
      : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error', cause: err });
  }
  ctx.upstream!.responseId = out.id;
  ctx.upstream!.finishReason = out.choices[0]?.finish_reason ?? undefined;
  const answer: unknown = ctx.output ? await ctx.output.completion(out, ctx) : out;
  ctx.upstream!.firstByteMs = performance.now() - ctx.startTime;
  sendJSON(res, 200, answer);
}

export function relayStream(
  { timeouts, events }: RelayDeps,
  response: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  replica: Replica,
  callerWantsUsage: boolean,
  deadline: number,
): Promise<void> {
  const transforms = ctx.responseTransforms;
  const output = ctx.output;
  const rawPassThrough = !output && !transforms.some((t) => t.chunk !== undefined || t.end !== undefined);
  const encode = output ? (c: ChatCompletionChunk) => output.chunk(c, ctx) : encodeChunk;
  const outcome = ctx.upstream!;
  return new Promise<void>((resolve, reject) => {
    let started = false;
    let settled = false;
    // The upstream said [DONE]: what it does with its socket afterwards no longer matters.
    let upstreamDone = false;
    let pending = '';
    let idle: NodeJS.Timeout | undefined;
    const total = setTimeout(
      () => fail(new UpstreamFault('timeout', 'the stream did not finish in time')),
      Math.max(0, deadline - performance.now()),
    );

    const emit = (chunk: ChatCompletionChunk, data: string | undefined) => {
      if (chunk.usage) ctx.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (choice?.finish_reason) outcome.finishReason = choice.finish_reason;
      if (chunk.choices.length === 0 && chunk.usage && !callerWantsUsage) return;
      if (rawPassThrough && data !== undefined) pending += `data: ${data}\n\n`;
      else for (const c of applyChunkTransforms(chunk, transforms, ctx)) pending += encode(c);
      // The first event goes out at once (time to first token); later ones are written once per upstream read.
      if (!started) flush();
    };
    const flush = () => {
      if (!pending) return;
      if (!started) {
        started = true;
        outcome.firstByteMs = performance.now() - ctx.startTime;
        startEventStream(res);
      }
      const text = pending;
      pending = '';
      if (!res.write(text)) {
        response.pause();
        res.once('drain', () => response.resume());
      }
    };
    /** The one teardown: true the first time (the caller then resolves or rejects), false after. */
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(idle);
      clearTimeout(total);
      return true;
    };
    const finish = () => {
      if (settle()) resolve();
    };
    /** Before the first byte: retry elsewhere. After it: one error event, then the stream ends. */
    const fail = (fault: UpstreamFault, publicError?: TeraError, countsAgainstReplica = true) => {
      if (settled) return;
      if (!started && !pending && (countsAgainstReplica || publicError)) {
        // Nothing sent yet: a replica fault is retried elsewhere; anything else is an ordinary error response.
        settle();
        response.destroy();
        return reject(countsAgainstReplica || !publicError ? new Retryable(fault) : publicError);
      }
      flush();
      settle();
      response.destroy();
      replica.breaker.recordFailure(fault);
      const error =
        publicError ??
        new TeraError(500, 'server_error', `The model server stream broke off (${fault.kind}). Retry with backoff.`, {
          code: 'upstream_stream_error',
        });
      outcome.error = { type: error.type, message: error.message };
      events.emit('midStreamFailure', ctx, replica.id, fault.message);
      recordEvent(ctx, 'tera.stream.failure', { 'tera.replica': replica.id, 'error.type': fault.kind });
      res.end(output ? output.error(error.toJSON(), ctx) : encodeErrorEvent(error.toJSON()));
      resolve();
    };

    // A transform that throws (a TeraError by design, e.g. invalid tool arguments in strict mode, or a bug) ends the stream cleanly.
    const transformFailed = (err: unknown) =>
      fail(
        new UpstreamFault('malformed', 'a response transform refused the stream'),
        err instanceof TeraError
          ? err
          : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error' }),
        false,
      );
    const decoder = createUpstreamSSEDecoder({
      onChunk: (chunk, data) => {
        if (outcome.responseId === undefined) outcome.responseId = chunk.id;
        try {
          emit(chunk, data);
        } catch (err) {
          transformFailed(err);
        }
      },
      onDone: () => {
        upstreamDone = true;
        let tail: string | Promise<string>;
        try {
          for (const c of applyEndTransforms(transforms, ctx)) pending += encode(c);
          tail = output ? output.end(ctx) : SSE_DONE;
        } catch (err) {
          return transformFailed(err);
        }
        const close = (text: string) => {
          pending += text;
          flush();
          res.end();
          finish();
        };
        if (typeof tail === 'string') return close(tail);
        // The output format stores something first (a stored response): the stream waits, the upstream is done.
        clearTimeout(idle);
        tail.then(close, transformFailed);
      },
      onUpstreamError: (body) => fail(new UpstreamFault('status', 'the replica sent an error event'), toPublicUpstreamError(500, body)),
      onMalformed: (reason) => fail(new UpstreamFault('malformed', reason)),
    });
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => fail(new UpstreamFault('timeout', `no data for ${timeouts.idleMs} ms`)), timeouts.idleMs);
    };
    armIdle();
    response.on('data', (bytes: Buffer) => {
      if (settled) return;
      armIdle();
      decoder.feed(bytes);
      flush();
    });
    response.once('end', () => {
      if (settled || upstreamDone) return;
      decoder.end();
      fail(new UpstreamFault('reset', 'the replica ended the stream before [DONE]'));
    });
    response.once('error', (err) => {
      if (ctx.signal.aborted) {
        settle();
        return reject(new ClientGone());
      }
      if (!upstreamDone) fail(new UpstreamFault('reset', `the stream broke off: ${err.message}`));
    });
    response.once('aborted', () => {
      if (!upstreamDone) fail(new UpstreamFault('reset', 'the stream broke off'));
    });
    ctx.signal.addEventListener(
      'abort',
      () => {
        if (settle()) reject(new ClientGone());
      },
      { once: true },
    );
  });
}
