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
