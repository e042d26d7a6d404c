import type { Meter, Tracer } from '@opentelemetry/api';
import { z } from 'zod';
import { fn, implementing, type Logger } from '@tera-gw/core';
import type { UsageRecord } from './telemetry.js';

export const telemetryOptionsSchema = z.strictObject({
  /** @defaultValue the global tracer provider's tracer (a no-op without an SDK) */
  tracer: implementing<Tracer>('an OpenTelemetry Tracer', 'startSpan').optional(),
  /** @defaultValue the global meter provider's meter */
  meter: implementing<Meter>('an OpenTelemetry Meter', 'createCounter').optional(),
  /** Record prompt and completion content on the span (`gen_ai.input.messages`, `gen_ai.output.messages`). @defaultValue false */
  recordContent: z.boolean().default(false),
  /** Called once per request that reached an upstream, after it finished; one that throws is logged, never allowed to break the request's end. */
  onUsage: fn<(record: UsageRecord) => void>().optional(),
  /** The model id in span names before the body is read. @defaultValue `openai/gpt-oss-20b` */
  model: z.string().min(1).optional(),
  /** USD per million input / output tokens, for `tera.cost_usd`, the usage record and the cost counter. @defaultValue `{ input: 0.07, output: 0.25 }` */
  prices: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).optional(),
  /** Where a throwing `onUsage` is logged. @defaultValue the console */
  logger: implementing<Logger>('a logger (pino or one of its shape)', 'error', 'warn', 'info', 'debug', 'child').optional(),
});

export type TelemetryOptions = z.input<typeof telemetryOptionsSchema>;
