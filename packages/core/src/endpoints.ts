import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from './context.js';
import { TeraError, modelNotFound } from './errors.js';
import { sendError, sendJSON, type Middleware } from './http.js';
import { GPT_OSS_20B_INFO, type ModelInfo } from './models.js';

/**
 * `X-Tera-Request-ID` on every response, set before any other stage can answer, and the same id
 * as `x-request-id` (what the openai SDK reads as `requestID`).
 */
export function requestId(): Middleware {
  return function teraRequestId(req, res, next) {
    const ctx = context(req, res);
    res.setHeader('X-Tera-Request-ID', ctx.id);
    res.setHeader('x-request-id', ctx.id);
    next();
  };
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/**
 * `GET /models` and `GET /models/{id}` (the id may contain a slash) in OpenAI's shapes. `models`
 * may depend on the request (the models its key may call): a model the caller may not use is
 * answered as one that does not exist, as OpenAI does.
 */
export function modelsHandler(
  models: readonly ModelInfo[] | ((req: IncomingMessage, res: ServerResponse) => readonly ModelInfo[]) = [GPT_OSS_20B_INFO],
): Middleware {
  const fixed = typeof models === 'function' ? undefined : { object: 'list', data: models };
  return function teraModels(req, res, next) {
    const path = pathOf(req);
    if (path !== '/models' && !path.startsWith('/models/')) return next();
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const list = fixed ?? {
      object: 'list',
      data: (models as (req: IncomingMessage, res: ServerResponse) => readonly ModelInfo[])(req, res),
    };
    if (path === '/models') return sendJSON(res, 200, list);
    let id: string;
    try {
      id = decodeURIComponent(path.slice('/models/'.length));
    } catch {
      // Malformed percent-encoding (`/models/%`) names no model.
      id = path.slice('/models/'.length);
    }
    const model = list.data.find((m) => m.id === id);
    if (!model) return sendError(res, modelNotFound(id));
    sendJSON(res, 200, model);
  };
}

const NOT_OFFERED = /^\/(moderations|embeddings|images|fine_tuning|fine-tunes|audio)(\/|$)/;

/** The route table the fallback answers 405 from: path -> methods. */
export type RouteTable = Readonly<Record<string, readonly string[]>>;

export const DEFAULT_ROUTES: RouteTable = {
  '/chat/completions': ['POST'],
  '/models': ['GET', 'HEAD'],
};

/**
 * The last handler: endpoints this model does not offer -> 404 saying so, unknown paths ->
 * 404, a known path with the wrong method -> 405 with `Allow`. Never a framework's HTML page.
 */
export function fallbackHandler(routes: RouteTable = DEFAULT_ROUTES): Middleware {
  return function teraFallback(req: IncomingMessage, res: ServerResponse) {
    const path = pathOf(req);
    const method = req.method ?? 'GET';
    const match = NOT_OFFERED.exec(path);
    if (match) {
      return sendError(
        res,
        new TeraError(
          404,
          'invalid_request_error',
          `The /v1/${match[1]} endpoint is not offered by this gateway: openai/gpt-oss-20b serves chat completions only.`,
          {
            code: 'endpoint_not_offered',
          },
        ),
      );
    }
    const allowed = routes[path] ?? (path.startsWith('/models/') ? routes['/models'] : undefined);
    if (allowed) {
      return sendError(
        res,
        new TeraError(405, 'invalid_request_error', `Method ${method} is not allowed on ${path}; use ${allowed.join(' or ')}.`, {
          code: 'method_not_allowed',
          headers: { Allow: allowed.join(', ') },
        }),
      );
    }
    sendError(res, new TeraError(404, 'invalid_request_error', `Invalid URL (${method} ${path}).`, { code: 'unknown_url' }));
  };
}
