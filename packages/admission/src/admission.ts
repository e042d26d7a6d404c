import {
  context,
  estimatedPromptTokens,
  invalidRequest,
  outputTokensCap,
  parseOptions,
  rateLimitError,
  recordEvent,
  sendError,
  serviceUnavailable,
  type Middleware,
  type RequestContext,
  type TeraError,
} from '@tera-gw/core';
import { admissionOptionsSchema, type AdmissionOptions } from './options.js';
import { FlowScheduler, type BandDepth, type Refusal } from './scheduler.js';

export interface QueueStatus {
  queued: number;
  bytes: number;
  bands: BandDepth[];
}

export interface AdmissionStage extends Middleware {
  /** What waits now, by band (for `/health`). */
  readonly status: () => QueueStatus;
  /** Stops listening to the pool and refuses what still waits. */
  readonly close: () => void;
}

interface Waiting {
  ctx: RequestContext;
  res: Parameters<Middleware>[1];
  next: () => void;
  timer: NodeJS.Timeout;
  onAbort: () => void;
}

const PRIORITY = /^-?\d{1,4}$/;
const FAIRNESS_ID = /^[\x21-\x7e]{1,128}$/;
/** Dispatch times kept for the drain rate behind `Retry-After`. */
const RATE_SAMPLES = 128;

/**
 * Holds requests at the gateway while the pool is full, in per-flow queues: flow = (fairness id,
 * priority), the fairness id being the key's id (or the end user its in-house gateway names).
 * Dispatches the moment room frees; refuses with 429 (503 while the pool is down) and a
 * `Retry-After` from the measured drain rate once a wait limit or a cap is reached.
 */
export function admission(input: AdmissionOptions): AdmissionStage {
  const options = parseOptions(admissionOptionsSchema, input, 'admission()');
  const { pool } = options;
  const fairnessByTokens = options.fairness === 'tokens';
  // A small quantum: a light flow (one short request) is served within one turn of the ring, while a flow of
  // long requests waits several turns per request; a large one would let each flow send bursts (measured: worse).
  const scheduler = new FlowScheduler<Waiting>(options.limits, fairnessByTokens ? 64 : 1);
  const fairnessHeader = options.fairnessHeader.toLowerCase();
  const defaultRetryAfter = options.retryAfterSeconds;
  const outputEstimate = options.outputEstimate;
  const maxWait = (priority: number): number => {
    const limits = options.maxWaitMs;
    if (typeof limits === 'number') return limits;
    return limits[String(priority)] ?? limits.default ?? 30_000;
  };
  const dispatchTimes = new Float64Array(RATE_SAMPLES);
  let dispatches = 0;

  /** Seconds until `ahead` requests have drained at the recent dispatch rate. */
  const retryAfter = (ahead: number): number => {
    const n = Math.min(dispatches, RATE_SAMPLES);
    if (n < 2) return defaultRetryAfter;
    const newest = dispatchTimes[(dispatches - 1) % RATE_SAMPLES]!;
    const oldest = dispatchTimes[(dispatches - n) % RATE_SAMPLES]!;
    const perSecond = ((n - 1) * 1000) / Math.max(1, newest - oldest);
    // A rate last seen long ago says nothing about now.
    if (performance.now() - newest > 30_000) return defaultRetryAfter;
    return Math.min(60, Math.max(1, Math.ceil((ahead + 1) / perSecond)));
  };

  const start = (ctx: RequestContext, res: Waiting['res'], next: () => void, queuedAt: number | undefined) => {
    const ticket = (ctx.pool ??= {});
    ticket.reservation?.settle();
    const reservation = pool.reserve();
    ticket.reservation = reservation;
    ctx.cleanups.push(() => reservation.settle());
    dispatchTimes[dispatches++ % RATE_SAMPLES] = performance.now();
    const waited = (ticket.queueMs ?? 0) + (queuedAt === undefined ? 0 : performance.now() - queuedAt);
    ticket.queueMs = waited;
    if (!res.headersSent) res.setHeader('X-Tera-Queue-Ms', String(Math.round(waited)));
    if (queuedAt !== undefined) recordEvent(ctx, 'tera.admission.dispatched', { 'tera.queue.ms': Math.round(waited) });
    next();
  };

  const overflow = (ctx: RequestContext, res: Waiting['res'], next: () => void, queuedAt: number | undefined, why: string) => {
    const waited = queuedAt === undefined ? 0 : performance.now() - queuedAt;
    ctx.pool = { ...ctx.pool, overflow: true, queueMs: waited };
    if (!res.headersSent) res.setHeader('X-Tera-Queue-Ms', String(Math.round(waited)));
    recordEvent(ctx, 'tera.admission.overflow', { 'tera.queue.ms': Math.round(waited), 'tera.reason': why });
    next();
  };

  const refusal = (ctx: RequestContext, why: 'sheddable' | 'pool_down' | Refusal | 'timeout', priority: number): TeraError => {
    const seconds = retryAfter(scheduler.ahead(priority));
    recordEvent(ctx, 'tera.admission.refused', { 'tera.reason': why, 'tera.priority': priority });
    if (pool.down())
      return serviceUnavailable('No openai/gpt-oss-20b replica is available right now; retry after the Retry-After seconds.', seconds);
    const reason =
      why === 'sheddable'
        ? `this request's priority (${priority}) is sheddable, so it is refused instead of queued`
        : why === 'timeout'
          ? `this request waited ${(maxWait(priority) / 1000).toFixed(1)} s in the queue (the limit for priority ${priority}) without a free slot`
          : why === 'flow_full'
            ? 'too many of your requests are already queued'
            : 'the queue is full';
    return rateLimitError(
      `openai/gpt-oss-20b is at capacity and ${reason}. Retry after the Retry-After seconds.`,
      seconds,
      why === 'timeout' ? 'queue_timeout' : why === 'sheddable' ? 'pool_full' : 'queue_full',
    );
  };

  let pumping = false;
  const pump = () => {
    if (pumping || scheduler.size === 0) return;
    pumping = true;
    // A microtask, not a timer: room that frees is used within the same turn of the event loop.
    queueMicrotask(() => {
      pumping = false;
      while (scheduler.size > 0 && pool.room() > 0) {
        const entry = scheduler.pop()!;
        const { ctx, res, next, timer, onAbort } = entry.value;
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
        start(ctx, res, next, entry.at);
      }
    });
  };
  const unsubscribe = pool.onChange(pump);

  interface Flow {
    priority: number;
    fairnessId: string;
    bytes: number;
  }

  /**
   * Admits the request now when the pool has room and nobody waits, else queues it in its flow;
   * `go` runs once admitted (or sent to overflow), `refused` with the error to answer otherwise.
   * A retried attempt enters again (`retry`): it is more work for the pool, so it waits its turn
   * like a new request, and is never sent to overflow (its first attempt ran in the pool).
   */
  const enter = (
    ctx: RequestContext,
    res: Waiting['res'],
    flow: Flow,
    go: () => void,
    refused: (error: TeraError) => void,
    retry: boolean,
  ) => {
    const { priority } = flow;
    if (scheduler.size === 0 && pool.room() > 0) return start(ctx, res, go, undefined);
    const overflowing = options.overflow && !retry ? options.overflow : undefined;
    if (overflowing && overflowing.afterMs <= 0) return overflow(ctx, res, go, undefined, 'pool_full');
    // No replica up at all: nothing to wait for that is known to come back soon (a vLLM restart
    // takes minutes), so the answer is at once; requests already queued keep their wait limit.
    if (pool.down()) {
      if (overflowing) return overflow(ctx, res, go, undefined, 'pool_down');
      return refused(refusal(ctx, 'pool_down', priority));
    }
    if (priority < 0) {
      if (overflowing) return overflow(ctx, res, go, undefined, 'sheddable');
      return refused(refusal(ctx, 'sheddable', priority));
    }
    const queuedAt = performance.now();
    const waitLimit = maxWait(priority);
    const overflowAfter = overflowing?.afterMs;
    const timeoutMs = overflowAfter !== undefined ? Math.min(overflowAfter, waitLimit) : waitLimit;
    const cost = fairnessByTokens ? estimatedPromptTokens(ctx) + outputTokensCap(ctx, outputEstimate) : 1;
    const waiting = { ctx, res, next: go } as Waiting;
    const queued = scheduler.enqueue(waiting, { fairnessId: flow.fairnessId, priority, bytes: flow.bytes, cost, at: queuedAt });
    if (typeof queued === 'string') {
      if (overflowing) return overflow(ctx, res, go, undefined, queued);
      return refused(refusal(ctx, queued, priority));
    }
    recordEvent(ctx, retry ? 'tera.admission.requeued' : 'tera.admission.queued', {
      'tera.priority': priority,
      'tera.queue.ahead': scheduler.ahead(priority) - 1,
    });
    waiting.onAbort = () => {
      // The client left while waiting: out of the queue at once, nothing reaches a replica.
      clearTimeout(waiting.timer);
      scheduler.remove(queued);
    };
    ctx.signal.addEventListener('abort', waiting.onAbort, { once: true });
    waiting.timer = setTimeout(() => {
      if (!scheduler.remove(queued)) return;
      ctx.signal.removeEventListener('abort', waiting.onAbort);
      if (overflowAfter !== undefined) return overflow(ctx, res, go, queuedAt, 'waited');
      const ticket = (ctx.pool ??= {});
      ticket.queueMs = (ticket.queueMs ?? 0) + performance.now() - queuedAt;
      refused(refusal(ctx, 'timeout', priority));
    }, timeoutMs);
    pump();
  };

  const handler: Middleware = function admissionStage(req, res, next) {
    const ctx = context(req, res);
    let priority = ctx.key?.priority ?? 0;
    const asked = req.headers['x-tera-priority'];
    if (asked !== undefined) {
      if (typeof asked !== 'string' || !PRIORITY.test(asked.trim()))
        return sendError(
          res,
          invalidRequest('X-Tera-Priority must be an integer; it can lower, never raise, the key’s priority.', null, 'invalid_priority'),
        );
      priority = Math.min(priority, Number(asked.trim()));
    }
    let fairnessId = ctx.key?.id ?? '';
    if (ctx.key?.fairnessFromHeader) {
      const named = req.headers[fairnessHeader];
      if (named !== undefined) {
        if (typeof named !== 'string' || !FAIRNESS_ID.test(named))
          return sendError(
            res,
            invalidRequest(`${fairnessHeader} must be 1 to 128 visible ASCII characters.`, null, 'invalid_fairness_id'),
          );
        fairnessId = `${fairnessId}\u0000${named}`;
      }
    }
    const flow: Flow = { priority, fairnessId, bytes: Number(req.headers['content-length'] ?? 0) || (ctx.promptTokenEstimate ?? 0) };
    (ctx.pool ??= {}).readmit = () =>
      new Promise<void>((resolve, reject) => {
        if (ctx.pool?.overflow) return resolve();
        enter(ctx, res, flow, resolve, reject, true);
      });
    enter(
      ctx,
      res,
      flow,
      () => next(),
      (error) => sendError(res, error),
      false,
    );
  };

  return Object.assign(handler, {
    status: (): QueueStatus => ({ queued: scheduler.size, bytes: scheduler.bytes, bands: scheduler.depths() }),
    close: () => {
      unsubscribe();
      for (let entry = scheduler.pop(); entry; entry = scheduler.pop()) {
        const { ctx, res, timer, onAbort } = entry.value;
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
        sendError(res, serviceUnavailable('The gateway is shutting down; retry on another instance.', 1, 'shutting_down'));
      }
    },
  });
}
