import type { IncomingMessage, ServerResponse } from 'node:http';
import { verifyBearer } from '@tera-gw/auth';
import { permissionError, sendError, sendJSON, TeraError, type Middleware } from '@tera-gw/core';
import type { VllmAdapter } from '@tera-gw/vllm';
import type { ParsedGatewayOptions } from './options.js';
import type { Stages } from './stages.js';

/**
 * `GET /health`: 200 when at least one replica is ready, 503 otherwise; `{status}` only, plus
 * replica states for an operator key (option `health.details`): replica URLs and load describe
 * the deployment and its traffic.
 */
export function healthHandler(options: ParsedGatewayOptions, stages: Stages, upstream: VllmAdapter, closing: () => boolean): Middleware {
  const details = options.health.details;
  return (req: IncomingMessage, res: ServerResponse) => {
    const replicas = upstream.replicas();
    const ok = !closing() && replicas.some((r) => r.state === 'ready' && r.breaker !== 'open');
    const code = ok ? 200 : 503;
    const status = ok ? 'ok' : closing() ? 'shutting_down' : 'unavailable';
    const withDetails = () =>
      sendJSON(res, code, stages.admission ? { status, replicas, queue: stages.admission.status() } : { status, replicas });
    const statusOnly = () => sendJSON(res, code, { status });
    if (details === 'public') return withDetails();
    if (details === 'none' || !stages.keyStore || !req.headers.authorization) return statusOnly();
    verifyBearer(req, stages.keyStore).then((record) => (record.operator ? withDetails() : statusOnly()), statusOnly);
  };
}

/** `GET /health/live`: the process serves (200) or is shutting down (503); nothing it depends on is asked. */
export function livenessHandler(closing: () => boolean): Middleware {
  return (_req: IncomingMessage, res: ServerResponse) =>
    sendJSON(res, closing() ? 503 : 200, { status: closing() ? 'shutting_down' : 'ok' });
}

const PING_TIMEOUT_MS = 1000;

/** Resolves with the names of the stores that did not answer within a second. */
async function unansweredStores(stores: Stages['stores']): Promise<string[]> {
  const answers = await Promise.all(
    stores.map(async ({ name, ping }) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS);
      });
      try {
        await Promise.race([ping(), late]);
        return undefined;
      } catch {
        return name;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return answers.filter((name): name is string => name !== undefined);
}

/**
 * `GET /health/ready`: 200 when a replica can take a request and every store the gateway needs
 * (Redis) answers; 503 with the reason before, while draining and with no replica ready.
 */
export function readinessHandler(stages: Stages, upstream: VllmAdapter, closing: () => boolean): Middleware {
  return (_req: IncomingMessage, res: ServerResponse) => {
    if (closing()) return sendJSON(res, 503, { status: 'shutting_down' });
    if (!upstream.replicas().some((r) => r.state === 'ready' && r.breaker !== 'open'))
      return sendJSON(res, 503, { status: 'unavailable', reason: 'no replica is ready' });
    unansweredStores(stages.stores).then(
      (down) =>
        down.length
          ? sendJSON(res, 503, { status: 'unavailable', reason: `no answer from ${down.join(', ')}` })
          : sendJSON(res, 200, { status: 'ok' }),
      (err: unknown) => sendError(res, err),
    );
  };
}

/** `GET /metrics` in Prometheus text format: per-key usage and spend describe every tenant, so operators only unless the deployment says otherwise. */
export function metricsHandler(options: ParsedGatewayOptions, stages: Stages): Middleware {
  const access = options.prometheus === false ? 'operator' : options.prometheus.access;
  const { prometheus, keyStore } = stages;
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!prometheus)
      return sendError(
        res,
        new TeraError(404, 'invalid_request_error', 'Prometheus metrics are off for this gateway.', { code: 'metrics_off' }),
      );
    const scrape = () => prometheus.getMetricsRequestHandler(req, res);
    if (access === 'public' || (!keyStore && options.auth === false)) return scrape();
    if (!keyStore) return sendError(res, permissionError('Metrics need an operator key.'));
    verifyBearer(req, keyStore).then(
      (record) => (record.operator ? scrape() : sendError(res, permissionError('Metrics need an operator key.'))),
      (err: unknown) => sendError(res, err),
    );
  };
}
