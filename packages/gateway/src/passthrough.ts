import type { IncomingMessage } from 'node:http';
import { createProxyMiddleware, fixRequestBody } from 'http-proxy-middleware';
import {
  context,
  invalidRequest,
  modelNotFound,
  permissionError,
  readJSONBody,
  sendError,
  serverError,
  serviceUnavailable,
  UPSTREAM_FAILED_MESSAGE,
  type Middleware,
} from '@tera-gw/core';
import type { VllmAdapter } from '@tera-gw/vllm';

export interface PassthroughOptions {
  /** vLLM paths offered as they are, e.g. `['/tokenize', '/detokenize', '/v1/completions']`. */
  paths: readonly string[];
  upstream: VllmAdapter;
  /** The key the replicas expect (vLLM `--api-key`); the caller's key is never forwarded. */
  apiKey?: string | undefined;
  model: string;
  maxBodyBytes?: number | undefined;
  retryAfterSeconds?: number | undefined;
}

export interface Passthrough {
  /** The path under the gateway's mount for each offered vLLM path: `/tokenize` -> `/tokenize`, `/v1/completions` -> `/completions`. */
  readonly served: ReadonlyMap<string, string>;
  /** Checks the body (JSON, the model served, the key's scope), so the limiter can run next. */
  readonly check: Middleware;
  /** The raw proxy to a ready replica (http-proxy-middleware), after auth, check and limiter. */
  readonly proxy: Middleware;
}

/** vLLM endpoints whose requests take `cache_salt` (CompletionRequest, ChatCompletionRequest). */
const SALTED_PATHS = new Set(['/v1/completions', '/v1/chat/completions']);

const NEVER_FORWARDED = ['authorization', 'openai-organization', 'openai-project', 'cookie', 'x-request-id'];

type Routed = IncomingMessage & { body?: unknown; teraTarget?: string; teraUpstreamPath?: string };

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * vLLM endpoints the gateway does not translate, offered raw when an operator opts in. A raw
 * proxy is what http-proxy-middleware is for; in front of it run the gateway's auth, a check of
 * the model and the key's scope, and the limiter; the replica comes from the adapter's health and
 * breakers.
 */
export function passthrough(options: PassthroughOptions): Passthrough {
  const served = new Map<string, string>();
  for (const path of options.paths) {
    if (!/^\/[A-Za-z0-9/_-]+$/.test(path))
      throw new TypeError(`createGateway(): passthrough path '${path}' must be a plain path such as '/tokenize'`);
    served.set(path.startsWith('/v1/') ? path.slice(3) : path, path);
  }

  const check: Middleware = function passthroughCheck(req, res, next) {
    const ctx = context(req, res);
    readJSONBody(req, options.maxBodyBytes)
      .then(({ value, bytes }) => {
        if (typeof value !== 'object' || value === null || Array.isArray(value))
          throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json');
        const model = (value as { model?: unknown }).model;
        if (model !== undefined && model !== options.model) throw modelNotFound(typeof model === 'string' ? model : JSON.stringify(model));
        const scoped = ctx.key?.models;
        if (scoped && scoped !== '*' && !scoped.includes(options.model))
          throw permissionError(`This API key is not allowed to use the model '${options.model}'.`);
        ctx.promptTokenEstimate = bytes;
        // Raw completions share vLLM's prefix cache like chat: the tenant's salt goes in too.
        if (SALTED_PATHS.has(served.get(pathOf(req)) ?? '')) {
          const body = value as { cache_salt?: unknown };
          const salt = options.upstream.cacheSalt(ctx, typeof body.cache_salt === 'string' ? body.cache_salt : undefined);
          if (salt === undefined) delete body.cache_salt;
          else body.cache_salt = salt;
        }
        (req as Routed).body = value;
        next();
      })
      .catch(next);
  };

  const proxyMiddleware = createProxyMiddleware<Routed>({
    changeOrigin: true,
    router: (req) => req.teraTarget!,
    pathRewrite: (path, req) => {
      const q = path.indexOf('?');
      return req.teraUpstreamPath! + (q === -1 ? '' : path.slice(q));
    },
    on: {
      proxyReq(proxyReq, req) {
        for (const name of NEVER_FORWARDED) proxyReq.removeHeader(name);
        if (options.apiKey) proxyReq.setHeader('authorization', `Bearer ${options.apiKey}`);
        proxyReq.setHeader('x-request-id', context(req).id);
        fixRequestBody(proxyReq, req);
      },
      proxyRes(proxyRes, req, res) {
        const status = proxyRes.statusCode ?? 0;
        if (status < 500) return;
        // A replica's 5xx body may hold a traceback, an address or a key: its start goes to the span, the caller gets fixed text.
        const outcome = context(req).upstream!;
        outcome.error = { type: 'server_error', message: `replica answered ${status}` };
        let head = '';
        proxyRes.on('data', (bytes: Buffer) => {
          if (head.length < 500) head += bytes.toString('utf8', 0, Math.min(bytes.length, 500 - head.length));
        });
        proxyRes.once('end', () => {
          if (head) outcome.error = { type: 'server_error', message: `replica answered ${status}: ${head}` };
        });
        if ('setHeader' in res) sendError(res, serverError(UPSTREAM_FAILED_MESSAGE, 'upstream_error'));
      },
      error(err, req, res) {
        const ctx = context(req);
        ctx.upstream!.error = { type: 'service_unavailable', message: err.message };
        if ('setHeader' in res)
          sendError(
            res,
            serviceUnavailable(
              'The model server could not be reached; retry shortly.',
              options.retryAfterSeconds ?? 2,
              'upstream_unreachable',
            ),
          );
        else res.destroy();
      },
    },
  });

  const proxy: Middleware = function passthroughProxy(req, res, next) {
    const ctx = context(req, res);
    const picked = options.upstream.pickReplica();
    if (!picked)
      return sendError(
        res,
        serviceUnavailable('No healthy openai/gpt-oss-20b replica is available right now; retry shortly.', options.retryAfterSeconds ?? 2),
      );
    const routed = req as Routed;
    routed.teraTarget = picked.base;
    routed.teraUpstreamPath = served.get(pathOf(req));
    const outcome = (ctx.upstream = { replica: picked.base, attempts: 1 } as NonNullable<typeof ctx.upstream>);
    // A replica fault (unreachable, reset, 5xx) counts against its breaker, as for chat.
    ctx.cleanups.push(() => picked.release(outcome.error?.message));
    proxyMiddleware(routed, res, next).catch(next);
  };

  return { served, check, proxy };
}
