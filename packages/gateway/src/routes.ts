import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  compose,
  context,
  estimatedPromptTokens,
  fallbackHandler,
  modelsHandler,
  validate,
  DEFAULT_ROUTES,
  GPT_OSS_20B,
  GPT_OSS_20B_INFO,
  type Middleware,
  type ModelInfo,
} from '@tera-gw/core';
import type { VllmAdapter } from '@tera-gw/vllm';
import type { ParsedGatewayOptions } from './options.js';
import { passthrough } from './passthrough.js';
import type { Stages } from './stages.js';

/** The routes of the gateway's mount, each a composed handler; `undefined` where a route is off. */
export interface Routes {
  chat: Middleware;
  responsesCreate: Middleware | undefined;
  inputTokens: Middleware | undefined;
  storedResponses: Middleware | undefined;
  passthrough: { served: ReadonlySet<string>; handler: Middleware } | undefined;
  models: Middleware;
  /** 404 and 405 in the error shape, for what no route took. */
  fallback: Middleware;
}

const defined = (stages: ReadonlyArray<Middleware | undefined>) => stages.filter((s): s is Middleware => s !== undefined);

/** The checks whose cost grows with the request (schema limits, an exact prompt count), once the cheap guards passed. */
const caps: Middleware = function costlyChecks(req, res, next) {
  const ctx = context(req, res);
  const checks = ctx.costlyChecks;
  if (!checks) return next();
  ctx.costlyChecks = undefined;
  checks().then(() => next(), next);
};

export function buildRoutes(options: ParsedGatewayOptions, stages: Stages, upstream: VllmAdapter): Routes {
  const aliases: Record<string, string> = Object.fromEntries(stages.aliases.map((a) => [a.alias, a.model]));
  const requestLimiter = stages.limiter();
  /**
   * Every route that costs a replica or the gateway real work runs the same guards in the same
   * order (ARCHITECTURE.md): telemetry, auth, the route's own reading of the request, scope,
   * limiter, budget, admission, caps; then what serves it. A guard with nothing to do for a route
   * passes (a budget only holds what the request can cost).
   */
  const guarded = (read: Middleware, serve: ReadonlyArray<Middleware | undefined>, limiter = requestLimiter, replica = true) =>
    compose(
      defined([
        stages.telemetry,
        stages.auth,
        read,
        stages.scope,
        limiter,
        replica ? stages.budget : undefined,
        replica ? stages.admission : undefined,
        caps,
        ...serve,
      ]),
    );
  const chat = guarded(validate({ ...options.validation, aliases, deferCostlyChecks: true }), stages.chatServing);
  const raw = options.passthrough?.length
    ? passthrough({
        paths: options.passthrough,
        upstream,
        model: GPT_OSS_20B,
        aliases,
        maxBodyBytes: options.validation?.maxBodyBytes,
        retryAfterSeconds: options.upstream?.retryAfterSeconds,
        maxAttempts: options.upstream?.maxAttempts,
        forwardTraceparent: (options.upstream?.forwardHeaders ?? ['traceparent']).includes('traceparent'),
      })
    : undefined;
  const responsesStage = stages.responses;
  const routeTable: Record<string, readonly string[]> = { ...DEFAULT_ROUTES };
  if (responsesStage) Object.assign(routeTable, { '/responses': ['POST'], '/responses/input_tokens': ['POST'] });
  for (const path of raw?.served.keys() ?? []) routeTable[path] = ['POST'];
  return {
    chat,
    responsesCreate: responsesStage ? guarded(responsesStage.create, stages.chatServing) : undefined,
    // Counting tokens is the gateway's own work, weighed by what it reads (no output, no replica).
    inputTokens: responsesStage
      ? guarded(responsesStage.inputTokens.read, [responsesStage.inputTokens.count], stages.limiter(estimatedPromptTokens), false)
      : undefined,
    // Reads of stored responses weigh one token at admission and what they return once answered.
    storedResponses: responsesStage ? compose(defined([stages.auth, stages.limiter(() => 1), responsesStage.stored])) : undefined,
    // Pass-through requests take the same guards as chat: one concurrency limit per key, budgets, admission, the output cap.
    passthrough: raw ? { served: new Set(raw.served.keys()), handler: guarded(raw.read, [raw.proxy]) } : undefined,
    // Behind the key: a tenant sees the models (and aliases) its key may call, nothing else.
    models: compose(defined([stages.auth, modelsHandler(modelsOfKey(stages))])),
    fallback: fallbackHandler(routeTable),
  };
}

/** The models a request's key may call: a key scoped to the model may call its aliases too; hidden aliases are not listed. */
function modelsOfKey(stages: Stages): (req: IncomingMessage, res: ServerResponse) => ModelInfo[] {
  const listed = [GPT_OSS_20B_INFO, ...stages.aliases.filter((a) => !a.hidden).map((a) => ({ ...GPT_OSS_20B_INFO, id: a.alias }))];
  return (req, res) => {
    const scoped = context(req, res).key?.models;
    if (scoped === undefined || scoped === '*' || scoped.includes(GPT_OSS_20B)) return listed;
    return listed.filter((m) => scoped.includes(m.id));
  };
}

/** What a request, as logs and metrics name it. */
export type Operation = 'chat' | 'responses' | 'input_tokens' | 'responses_read' | 'passthrough' | 'models';

/** Which route takes a request, by method and path under the mount, and what the request is. */
export function routeOf(routes: Routes, method: string | undefined, path: string): [Operation, Middleware] | undefined {
  const route = (operation: Operation, handler: Middleware | undefined): [Operation, Middleware] | undefined =>
    handler ? [operation, handler] : undefined;
  if (method === 'POST' && path === '/chat/completions') return route('chat', routes.chat);
  if (method === 'POST' && (path === '/responses' || path === '/responses/')) return route('responses', routes.responsesCreate);
  if (method === 'POST' && path === '/responses/input_tokens') return route('input_tokens', routes.inputTokens);
  if (path.startsWith('/responses/') && path !== '/responses/input_tokens') return route('responses_read', routes.storedResponses);
  if (method === 'POST' && routes.passthrough?.served.has(path)) return route('passthrough', routes.passthrough.handler);
  if ((method === 'GET' || method === 'HEAD') && (path === '/models' || path.startsWith('/models/'))) return route('models', routes.models);
  return undefined;
}
