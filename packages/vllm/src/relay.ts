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
  encodeRawChunk,
  isChanged,
  transformsMarkChanges,
  withoutUsageMember,
  encodeErrorEvent,
  recordEvent,
  sendJSON,
  startEventStream,
  type ChatCompletion,
  type ChatCompletionChunk,
  type RequestContext,
} from '@tera-gw/core';
import type { AdapterEvents } from './adapter.js';
import { classifyUpstreamError, ModelOutputFailure, RequestFailure, upstreamErrorMessage } from './outcome.js';
import { isEmptyCompletion, structuredOutputCheck } from './output-checks.js';
import { UsageMeter } from './usage.js';
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
  /** Look for empty completions and broken structured output (on by default). */
  outputChecks: { emptyCompletions: boolean; structuredOutput: boolean };
}

/** One response's stream across attempts: a retry continues it after an earlier attempt's role chunk. */
export interface StreamState {
  /** Headers and the first (role) chunk went to the client. */
  started: boolean;
}

type Delta = ChatCompletionChunk['choices'][number]['delta'] & { reasoning?: string | null; reasoning_content?: string | null };
const carriesText = (d: ChatCompletionChunk['choices'][number]['delta']) => {
  const delta = d as Delta;
  return !!(delta.content || delta.reasoning || delta.reasoning_content || delta.tool_calls?.length);
};

/** Ends a stream that already started with one error event, in the response's own shape. */
export function endStreamWithError(res: ServerResponse, ctx: RequestContext, error: TeraError): void {
  ctx.upstream!.error = { type: error.type, message: error.message };
  ctx.errorType = error.type;
  if (!res.writableEnded) res.end(ctx.output ? ctx.output.error(error.toJSON(), ctx) : encodeErrorEvent(error.toJSON()));
}

/** What the caller reads when the model's output failed after text went out (fixed text, never the replica's). */
export const modelOutputError = (failure: ModelOutputFailure): TeraError =>
  new TeraError(500, 'server_error', `The model produced ${ModelOutputFailure.describe(failure.kind)}. Retry the request.`, {
    code: failure.kind,
  });

export async function relayCompletion(
  { timeouts, outputChecks }: RelayDeps,
  response: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  deadline: number,
): Promise<void> {
  let completion: ChatCompletion;
  try {
    const text = (await readResponse(response, timeouts.idleMs, deadline, ctx.signal)).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UpstreamFault('malformed', 'the replica answered a body that is not JSON');
    }
    // A 200 whose body is an error object (a fork's regression): read like any error answer.
    if (upstreamErrorMessage(parsed) !== undefined) {
      const verdict = classifyUpstreamError(200, text);
      if (verdict.owner === 'model') throw verdict.failure;
      if (verdict.owner === 'replica') throw verdict.fault;
    }
    completion = parsed as ChatCompletion;
    if (!completion || !Array.isArray(completion.choices))
      throw new UpstreamFault('malformed', 'the replica answered a body that is not a chat completion');
  } catch (err) {
    if (err instanceof ClientGone || err instanceof ModelOutputFailure) throw err;
    throw new Retryable(
      err instanceof UpstreamFault ? err : new UpstreamFault('malformed', 'the replica answered a body that is not JSON'),
    );
  }
  new UsageMeter().observeCompletion(completion);
  if (completion.usage) ctx.usage = completion.usage;
  if (outputChecks.emptyCompletions && isEmptyCompletion(completion))
    throw new ModelOutputFailure('empty_completion', `finish_reason ${completion.choices[0]?.finish_reason} with no text`);
  let out: ChatCompletion;
  try {
    out = applyCompletionTransforms(completion, ctx);
  } catch (err) {
    throw err instanceof TeraError
      ? err
      : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error', cause: err });
  }
  const check = outputChecks.structuredOutput ? structuredOutputCheck(ctx.body) : undefined;
  const content = out.choices[0]?.message.content;
  if (check && typeof content === 'string' && !out.choices[0]?.message.tool_calls?.length && out.choices[0]?.finish_reason !== 'length') {
    const failure = check(content);
    if (failure) throw failure;
  }
  if (ctx.requestedModel) out.model = ctx.requestedModel;
  ctx.upstream!.responseId = out.id;
  ctx.upstream!.finishReason = out.choices[0]?.finish_reason ?? undefined;
  const answer: unknown = ctx.output ? await ctx.output.completion(out, ctx) : out;
  ctx.upstream!.firstByteMs = performance.now() - ctx.startTime;
  sendJSON(res, 200, answer);
}

/**
 * Relays one attempt's stream. Before any text (reasoning, content, a tool call) came from
 * the upstream, every failure rejects so the caller of this function can retry, continuing
 * the same response after the role chunk that may already have gone out; after text, a
 * failure is one error event and the stream ends.
 */
export function relayStream(
  { timeouts, events, outputChecks }: RelayDeps,
  response: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  replica: Replica,
  caller: { usage: boolean; continuousUsage: boolean },
  deadline: number,
  stream: StreamState,
): Promise<void> {
  const transforms = ctx.responseTransforms;
  const output = ctx.output;
  const check = outputChecks.structuredOutput ? structuredOutputCheck(ctx.body) : undefined;
  // Chunks no transform edited leave as the upstream's bytes (usage member cut when the caller did not ask for it).
  const keepBytes = !output && !ctx.requestedModel && transformsMarkChanges(transforms);
  const meter = new UsageMeter();
  const encode = output ? (c: ChatCompletionChunk) => output.chunk(c, ctx) : encodeChunk;
  const outcome = ctx.upstream!;
  // An earlier attempt's role chunk already went out: this attempt's is dropped.
  const continuing = stream.started;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let upstreamText = false;
    let content = '';
    // The upstream said [DONE]: what it does with its socket afterwards no longer matters.
    let upstreamDone = false;
    let pending = '';
    let idle: NodeJS.Timeout | undefined;
    const total = setTimeout(
      () => replicaFault(new UpstreamFault('timeout', 'the stream did not finish in time')),
      Math.max(0, deadline - performance.now()),
    );

    const emit = (chunk: ChatCompletionChunk, data: string) => {
      meter.observeChunk(chunk);
      if (chunk.usage) ctx.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (choice?.finish_reason) outcome.finishReason = choice.finish_reason;
      if (chunk.choices.length === 0 && chunk.usage) {
        meter.complete(chunk.usage);
        if (!caller.usage) return;
      }
      // The gateway asks for usage on every chunk (to bill aborted streams exactly); the caller sees it only if it
      // asked too. Set to undefined rather than deleted: JSON.stringify drops it, and the object keeps its shape.
      const cutUsage = !!chunk.usage && chunk.choices.length > 0 && !caller.continuousUsage;
      if (cutUsage) chunk.usage = undefined;
      for (const c of applyChunkTransforms(chunk, transforms, ctx)) {
        const out = c.choices[0];
        if (check && out) {
          content += out.delta.content ?? '';
          // Structured output is checked whole, before its normal finish goes out.
          if (out.finish_reason && out.finish_reason !== 'length' && !out.delta.tool_calls?.length) {
            const failure = check(content);
            if (failure) throw failure;
          }
        }
        if (ctx.requestedModel) c.model = ctx.requestedModel;
        // A usage-only chunk is never kept: the meter adds its reasoning count.
        if (keepBytes && c === chunk && c.choices.length > 0 && !isChanged(c)) {
          const kept = cutUsage ? withoutUsageMember(data) : data;
          if (kept !== undefined) {
            pending += encodeRawChunk(kept);
            continue;
          }
        }
        pending += encode(c);
      }
      // The first event goes out at once (time to first token); later ones are written once per upstream read.
      if (!stream.started) flush();
    };
    const flush = () => {
      if (!pending) return;
      if (!stream.started) {
        stream.started = true;
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
      // However the stream ends (aborted, broken, retried), its last usage gets its reasoning count.
      if (ctx.usage) meter.complete(ctx.usage);
      clearTimeout(idle);
      clearTimeout(total);
      return true;
    };
    const finish = () => {
      if (settle()) resolve();
    };
    /** No text went out: the caller of relayStream retries, continuing this response if it started. */
    const retry = (err: Retryable | ModelOutputFailure | RequestFailure) => {
      if (!settle()) return;
      if (stream.started) flush();
      else pending = '';
      response.destroy();
      reject(err);
    };
    /** Text went out (or the failure is not the upstream's): one error event, then the end. */
    const endWithError = (error: TeraError, fault?: UpstreamFault) => {
      if (settled) return;
      if (!stream.started && !pending) {
        // Nothing sent yet: an ordinary error answer.
        settle();
        response.destroy();
        return reject(error);
      }
      flush();
      settle();
      response.destroy();
      if (fault) {
        replica.breaker.recordFailure(fault);
        events.emit('midStreamFailure', ctx, replica.id, fault.message);
        recordEvent(ctx, 'tera.stream.failure', { 'tera.replica': replica.id, 'error.type': fault.kind });
      }
      endStreamWithError(res, ctx, error);
      resolve();
    };
    const replicaFault = (fault: UpstreamFault) => {
      if (!upstreamText) return retry(new Retryable(fault));
      endWithError(
        new TeraError(500, 'server_error', `The model server stream broke off (${fault.kind}). Retry with backoff.`, {
          code: 'upstream_stream_error',
        }),
        fault,
      );
    };
    const modelFailure = (failure: ModelOutputFailure | RequestFailure) => {
      if (!upstreamText) return retry(failure);
      recordEvent(ctx, 'tera.stream.failure', {
        'tera.replica': replica.id,
        'error.type': failure instanceof ModelOutputFailure ? failure.kind : 'request_failure',
      });
      endWithError(
        failure instanceof ModelOutputFailure
          ? modelOutputError(failure)
          : new TeraError(500, 'server_error', 'The model server failed while streaming. Retry with backoff.', {
              code: 'upstream_stream_error',
            }),
      );
    };

    // A transform that throws (a TeraError by design, e.g. invalid tool arguments in strict mode, or a bug) ends the stream cleanly.
    const transformFailed = (err: unknown) => {
      if (err instanceof ModelOutputFailure) {
        recordEvent(ctx, `tera.output.${err.kind}`, { 'tera.replica': replica.id });
        return endWithError(modelOutputError(err));
      }
      endWithError(
        err instanceof TeraError
          ? err
          : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error' }),
      );
    };
    const decoder = createUpstreamSSEDecoder({
      onChunk: (chunk, data) => {
        if (settled) return;
        if (outcome.responseId === undefined) outcome.responseId = chunk.id;
        const choice = chunk.choices[0];
        if (choice) {
          if (carriesText(choice.delta)) upstreamText = true;
          else if (continuing && !upstreamText && choice.delta.role && !choice.finish_reason) return;
          if (choice.finish_reason && !upstreamText && choice.finish_reason !== 'length' && outputChecks.emptyCompletions)
            return modelFailure(new ModelOutputFailure('empty_completion', `finish_reason ${choice.finish_reason} with no text`));
        }
        try {
          emit(chunk, data);
        } catch (err) {
          transformFailed(err);
        }
      },
      onDone: () => {
        if (settled) return;
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
      onUpstreamError: (body) => {
        if (settled) return;
        const verdict = classifyUpstreamError(0, JSON.stringify(body));
        if (verdict.owner === 'replica') return replicaFault(verdict.fault);
        if (verdict.owner === 'caller') return endWithError(verdict.error);
        modelFailure(verdict.failure);
      },
      onMalformed: (reason) => settled || replicaFault(new UpstreamFault('malformed', reason)),
    });
    // One timer re-armed in place on every read (refresh), not a new one per read.
    const armIdle = () => {
      if (idle) idle.refresh();
      else idle = setTimeout(() => replicaFault(new UpstreamFault('timeout', `no data for ${timeouts.idleMs} ms`)), timeouts.idleMs);
    };
    armIdle();
    // Node's string decoder (multibyte characters split across reads included) instead of a TextDecoder per stream.
    response.setEncoding('utf8');
    response.on('data', (text: string) => {
      if (settled) return;
      armIdle();
      decoder.feed(text);
      flush();
    });
    response.once('end', () => {
      if (settled || upstreamDone) return;
      decoder.end();
      replicaFault(new UpstreamFault('reset', 'the replica ended the stream before [DONE]'));
    });
    response.once('error', (err) => {
      if (ctx.signal.aborted) {
        settle();
        return reject(new ClientGone());
      }
      if (!upstreamDone) replicaFault(new UpstreamFault('reset', `the stream broke off: ${err.message}`));
    });
    response.once('aborted', () => {
      if (!upstreamDone) replicaFault(new UpstreamFault('reset', 'the stream broke off'));
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
