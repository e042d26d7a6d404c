import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { context } from '@tera-gw/core';
import { telemetry } from '@tera-gw/telemetry';

/**
 * CPU per request of the telemetry stage alone, in process (no sockets, so the machine's noise
 * matters less): no meter SDK, and the gateway's Prometheus meter provider. Minimum of 7 runs.
 */
const N = Number(process.env.BENCH_REQUESTS ?? 20_000);
const usage = { prompt_tokens: 40, completion_tokens: 200, total_tokens: 240, completion_tokens_details: { reasoning_tokens: 120 } };

type Stage = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;

function run(stage: Stage): number {
  const started = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const req = new IncomingMessage(new Socket());
    const res = new ServerResponse(req);
    const ctx = context(req, res);
    ctx.key = { id: `key-${i % 8}`, models: '*' };
    stage(req, res, () => {
      ctx.upstream = { attempts: 1, replica: 'http://127.0.0.1:1', firstByteMs: 3, finishReason: 'stop' };
      ctx.usage = usage;
      res.statusCode = 200;
      res.emit('finish');
      res.emit('close');
    });
  }
  const used = process.cpuUsage(started);
  return (used.user + used.system) / N;
}

const bare = telemetry({});
const exporter = new PrometheusExporter({ preventServerStart: true });
const withPrometheus = telemetry({ meter: new MeterProvider({ readers: [exporter] }).getMeter('bench') });
const none: Stage = (_req, _res, next) => next();
const best = (stage: Stage) => Math.min(...Array.from({ length: 7 }, () => run(stage)));
const floor = best(none);
console.log(
  `telemetry stage, CPU µs per request over a request/response pair alone (min of 7 x ${N}): ` +
    `no SDK +${(best(bare) - floor).toFixed(2)}, Prometheus provider +${(best(withPrometheus) - floor).toFixed(2)} (the pair: ${floor.toFixed(2)})`,
);
