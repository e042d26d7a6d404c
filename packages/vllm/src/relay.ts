import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpstreamFault } from '@tera-gw/circuit-breaker';
import {
  ModelOutputFailure,
  RequestFailure,
  TeraError,
  applyCompletionTransforms,
  createChunkPipeline,
  errorEventText,
  recordEvent,
  sendJSON,
  startEventStream,
  streamFailureError,
  upstreamErrorMessage,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChunkPipeline,
  type RequestContext,
  type StreamFailure,
} from '@tera-gw/core';
import type { AdapterEvents } from './adapter.js';
import { classify } from './outcome.js';
import { isEmptyCompletion, structuredOutputCheck } from './output-checks.js';
import { ContinuationTranslator, TokenLog, withoutTokenIds, type StreamIdentity } from './resume.js';
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

/** The replica failed after text reached the caller, and the stream can be resumed elsewhere from its token ids. */
export class Resume extends Error {
  constructor(
    readonly fault: UpstreamFault,
    /** What the caller reads if it cannot be resumed. */
    readonly error: TeraError,
  ) {
    super(fault.message);
  }
}

/** One response's stream across attempts: a retry continues it after an earlier attempt's role chunk, a resumption after its last token. */
export interface StreamState {
  /** Headers and the first (role) chunk went to the client. */
  started: boolean;
  /** Reasoning counted across every attempt that reached the caller. */
  readonly meter: UsageMeter;
  /** The stream's token ids, when the gateway asked for them (it can be resumed). */
  tokens: TokenLog | undefined;
  /** The id, `created` and model of the caller's stream, from its first chunk. */
  identity: StreamIdentity | undefined;
  /** Resumptions so far. */
  resumes: number;
}

/** What the caller asked of usage in its stream (the gateway asks the replica for it on every chunk). */
export interface CallerUsage {
  include: boolean;
  continuous: boolean;
}

/** Ends a stream that already started with one error event, in the response's own shape. */
export function endStreamWithError(res: ServerResponse, ctx: RequestContext, error: TeraError): void {
  ctx.upstream!.error = { type: error.type, message: error.message };
  ctx.errorType = error.type;
  if (error.code) ctx.errorCode = error.code;
  if (!res.writableEnded) res.end(errorEventText(ctx, error));
}

export async function relayCompletion(
  { timeouts, outputChecks }: RelayDeps,
  response: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  deadline: number,
): Promise<void> {
  const completion = await readCompletion(response, timeouts.idleMs, deadline, ctx.signal);
  new UsageMeter().observeCompletion(completion);
  if (completion.usage) ctx.usage = completion.usage;
  if (outputChecks.emptyCompletions && isEmptyCompletion(completion))
    throw new ModelOutputFailure('empty_completion', `finish_reason ${completion.choices[0]?.finish_reason} with no text`);
  let out: ChatCompletion;
  try {
    out = applyCompletionTransforms(completion, ctx);
  } catch (err) {
    throw streamFailureError({ kind: 'transform', error: err });
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

/** The replica's JSON answer as a chat completion; anything else is a replica fault (retryable) or the model's (a Harmony error object). */
async function readCompletion(response: IncomingMessage, idleMs: number, deadline: number, signal: AbortSignal): Promise<ChatCompletion> {
  try {
    const text = (await readResponse(response, idleMs, deadline, signal)).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UpstreamFault('malformed', 'the replica answered a body that is not JSON');
    }
    // A 200 whose body is an error object (a fork's regression): read like any error answer.
    if (upstreamErrorMessage(parsed) !== undefined) {
      const verdict = classify(200, text);
      if (verdict.owner === 'model') throw verdict.failure;
      if (verdict.owner === 'replica') throw verdict.fault;
    }
    const completion = parsed as ChatCompletion;
    if (!completion || !Array.isArray(completion.choices))
      throw new UpstreamFault('malformed', 'the replica answered a body that is not a chat completion');
    return completion;
  } catch (err) {
    if (err instanceof ClientGone || err instanceof ModelOutputFailure) throw err;
    throw new Retryable(
      err instanceof UpstreamFault ? err : new UpstreamFault('malformed', 'the replica answered a body that is not JSON'),
    );
  }
}

/**
 * Relays one attempt's stream through core's chunk pipeline, as one object with a method per
 * step of its life (as OpenTelemetry's undici instrumentation names its hooks). Before any text
 * (reasoning, content, a tool call) came from the upstream, every failure rejects so that serve
 * can retry, continuing the same response after the role chunk that may already have gone out;
 * after text, a failure is one error event and the stream ends.
 */
export class StreamRelay {
  private readonly pipeline: ChunkPipeline;
  private readonly total: NodeJS.Timeout;
  private idle: NodeJS.Timeout | undefined;
  private pending = '';
  private settled = false;
  /** The stream is being moved off a draining replica: not the replica's fault. */
  private moving = false;
  /** The finish came: the answer is whole, only usage and `[DONE]` may follow (nothing to resume). */
  private answered = false;
  private resolve!: () => void;
  private reject!: (err: unknown) => void;
  readonly done: Promise<void>;

  constructor(
    private readonly deps: RelayDeps,
    private readonly response: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly ctx: RequestContext,
    private readonly replica: Replica,
    caller: CallerUsage,
    deadline: number,
    private readonly stream: StreamState,
    /** A continuation's completions stream, read into chat chunks before the pipeline. */
    private readonly translator?: ContinuationTranslator,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const check = deps.outputChecks.structuredOutput ? structuredOutputCheck(ctx.body) : undefined;
    this.pipeline = createChunkPipeline({
      ctx,
      write: (text) => (this.pending += text),
      callerUsage: caller,
      continuing: stream.started,
      // A continuation may have nothing left but its finish.
      emptyCompletion: deps.outputChecks.emptyCompletions && !translator,
      ...(stream.tokens ? { cutMembers: withoutTokenIds, dropEmptyDeltas: true } : {}),
      ...(check ? { checkContent: check } : {}),
      observe: (chunk) => this.onChunk(chunk),
      onFailure: (failure) => this.onFailure(failure),
      onDone: () => this.onDone(),
    });
    this.total = setTimeout(
      () => this.pipeline.fail({ kind: 'broken', cause: 'timeout', reason: 'the stream did not finish in time' }),
      Math.max(0, deadline - performance.now()),
    );
    this.armIdle();
    // Node's string decoder (multibyte characters split across reads included) instead of a TextDecoder per stream.
    response.setEncoding('utf8');
    response.on('data', (text: string) => this.onData(text));
    response.once('end', () => this.onUpstreamEnd());
    response.once('error', (err) => this.onUpstreamError(`the stream broke off: ${err.message}`));
    response.once('aborted', () => this.onUpstreamError('the stream broke off'));
    ctx.signal.addEventListener('abort', () => this.onClientClose(), { once: true });
    replica.streams.add(this);
  }

  /**
   * The replica drains and its time is up: the stream continues on another replica from its last
   * token, as after a failure, without counting against this one. A stream with no text yet, or
   * that cannot be resumed, finishes where it is.
   */
  moveAway(): void {
    if (this.settled || !this.pipeline.sawText || !this.resumable()) return;
    this.moving = true;
    this.pipeline.fail({ kind: 'broken', cause: 'reset', reason: 'the replica is draining' });
  }

  /** Bytes from the replica: decoded, transformed and written once per read (the first event at once). */
  private onData(text: string): void {
    if (this.settled) return;
    this.armIdle();
    this.pipeline.feed(this.translator ? this.translator.feed(text) : text);
    this.flush();
  }

  /** An upstream chunk, before the transforms: the meter counts its reasoning, the outcome takes its id and finish. */
  private onChunk(chunk: ChatCompletionChunk): void {
    const outcome = this.ctx.upstream!;
    if (outcome.responseId === undefined) outcome.responseId = chunk.id;
    const stream = this.stream;
    stream.tokens?.observe(chunk);
    stream.identity ??= { id: chunk.id, created: chunk.created, model: chunk.model };
    stream.meter.observeChunk(chunk);
    const finish = chunk.choices[0]?.finish_reason;
    if (finish) {
      outcome.finishReason = finish;
      this.answered = true;
    }
    if (chunk.choices.length === 0 && chunk.usage) stream.meter.complete(chunk.usage);
  }

  private onDone(): void {
    this.flush();
    // Before the response ends, while the request's span is still open.
    if (this.translator) {
      const cost = this.translator.upstreamUsage;
      recordEvent(this.ctx, 'tera.resume', {
        'tera.replica': this.replica.id,
        'tera.resume.outcome': 'completed',
        'tera.resume.prompt_tokens': cost?.prompt_tokens ?? 0,
        'tera.resume.cached_tokens': cost?.prompt_tokens_details?.cached_tokens ?? 0,
      });
    }
    this.res.end();
    if (this.settle()) this.resolve();
  }

  private onUpstreamEnd(): void {
    if (!this.settled) this.pipeline.end();
  }

  private onUpstreamError(reason: string): void {
    if (this.ctx.signal.aborted) return this.onClientClose();
    this.pipeline.fail({ kind: 'broken', cause: 'reset', reason });
  }

  private onClientClose(): void {
    if (this.settle()) this.reject(new ClientGone());
  }

  /**
   * The stream failed. Before text: the attempt is retried (the replica's fault counts against its
   * breaker in serve). After text: one error event, and the replica's own faults count here.
   */
  private onFailure(failure: StreamFailure): void {
    if (this.settled) return;
    const replicaFault = this.replicaFault(failure);
    if (!this.pipeline.sawText) {
      if (replicaFault) return this.retry(new Retryable(replicaFault));
      if (failure.kind === 'model') return this.retry(failure.failure);
      if (failure.kind === 'upstream') {
        const verdict = classify(0, JSON.stringify(failure.body));
        if (verdict.owner === 'model' || verdict.owner === 'request') return this.retry(verdict.failure);
      }
    }
    const error = streamFailureError(failure);
    if (replicaFault && this.resumable()) {
      // The replica's fault, after text: counted once against it here; serve continues the stream on another replica.
      if (!this.moving) this.record(failure, replicaFault);
      this.flush();
      this.settle();
      this.response.destroy();
      return this.reject(new Resume(replicaFault, error));
    }
    if (!this.stream.started && !this.pending) {
      // Nothing sent yet: an ordinary error answer.
      this.settle();
      this.response.destroy();
      return this.reject(error);
    }
    this.record(failure, replicaFault);
    this.flush();
    this.settle();
    this.response.destroy();
    endStreamWithError(this.res, this.ctx, error);
    this.resolve();
  }

  /** The stream's ids are known (the replica sent them) and the caller is still there. */
  private resumable(): boolean {
    const { tokens, identity } = this.stream;
    return identity !== undefined && tokens !== undefined && tokens.complete && !this.answered && !this.ctx.signal.aborted;
  }

  /** The replica's own fault in a failure (a broken connection, malformed data, an error event that is not the model's), if it is one. */
  private replicaFault(failure: StreamFailure): UpstreamFault | undefined {
    if (failure.kind === 'broken') return new UpstreamFault(failure.cause === 'timeout' ? 'timeout' : 'reset', failure.reason);
    if (failure.kind === 'malformed') return new UpstreamFault('malformed', failure.reason);
    if (failure.kind === 'upstream') {
      const verdict = classify(0, JSON.stringify(failure.body));
      if (verdict.owner === 'replica') return verdict.fault;
    }
    return undefined;
  }

  /** A failure after text, for the breaker, the adapter's events and the span. */
  private record(failure: StreamFailure, fault: UpstreamFault | undefined): void {
    const { ctx, replica } = this;
    if (fault) {
      replica.breaker.recordFailure(fault);
      this.deps.events.emit('midStreamFailure', ctx, replica.id, fault.message);
      recordEvent(ctx, 'tera.stream.failure', { 'tera.replica': replica.id, 'error.type': fault.kind });
      return;
    }
    if (failure.kind === 'model') return recordEvent(ctx, `tera.output.${failure.failure.kind}`, { 'tera.replica': replica.id });
    let kind: string = failure.kind;
    if (failure.kind === 'upstream') {
      const verdict = classify(0, JSON.stringify(failure.body));
      kind = verdict.owner === 'model' ? verdict.failure.kind : verdict.owner === 'request' ? 'request_failure' : verdict.owner;
    }
    recordEvent(ctx, 'tera.stream.failure', { 'tera.replica': replica.id, 'error.type': kind });
  }

  /** No text went out: serve retries, continuing this response if it started. */
  private retry(err: Retryable | ModelOutputFailure | RequestFailure): void {
    if (!this.settle()) return;
    if (this.stream.started) this.flush();
    else this.pending = '';
    this.response.destroy();
    this.reject(err);
  }

  private flush(): void {
    if (!this.pending) return;
    if (!this.stream.started) {
      this.stream.started = true;
      this.ctx.upstream!.firstByteMs = performance.now() - this.ctx.startTime;
      startEventStream(this.res);
    }
    const text = this.pending;
    this.pending = '';
    if (!this.res.write(text)) {
      this.response.pause();
      this.res.once('drain', () => this.response.resume());
    }
  }

  /** One timer re-armed in place on every read (refresh), not a new one per read. */
  private armIdle(): void {
    if (this.idle) this.idle.refresh();
    else
      this.idle = setTimeout(
        () => this.pipeline.fail({ kind: 'broken', cause: 'timeout', reason: `no data for ${this.deps.timeouts.idleMs} ms` }),
        this.deps.timeouts.idleMs,
      );
  }

  /** The one teardown: true the first time (the caller then resolves or rejects), false after. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.replica.streams.delete(this);
    // However the stream ends (aborted, broken, retried), its last usage gets its reasoning count.
    if (this.ctx.usage) this.stream.meter.complete(this.ctx.usage);
    clearTimeout(this.idle);
    clearTimeout(this.total);
    return true;
  }
}
