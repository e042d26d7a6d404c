import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from './context.js';
import { sendError, type Middleware, type NextFunction } from './http.js';

/**
 * Runs stages in order as one connect-style handler, outside any framework (a bare
 * `node:http` server, or Koa through `@tera-gw/koa`). An error from any stage is answered in
 * the documented shape, unless `onError` passes it on.
 */
export function compose(
  stages: readonly Middleware[],
  onError?: (err: unknown, req: IncomingMessage, res: ServerResponse, next: NextFunction) => void,
): Middleware {
  return function composed(req, res, outerNext) {
    let i = 0;
    const next: NextFunction = (err) => {
      if (err !== undefined && err !== null) {
        if (onError) return onError(err, req, res, outerNext);
        if (!res.headersSent && !res.hasHeader('X-Tera-Request-ID')) res.setHeader('X-Tera-Request-ID', context(req, res).id);
        return sendError(res, err);
      }
      const stage = stages[i++];
      if (!stage) return outerNext();
      try {
        stage(req, res, next);
      } catch (thrown) {
        next(thrown ?? new Error('a stage threw'));
      }
    };
    next();
  };
}
