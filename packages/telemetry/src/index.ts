export { telemetry, type TelemetryStage, type UsageRecord } from './telemetry.js';
export { telemetryOptionsSchema, type TelemetryOptions } from './options.js';
export { ATTR, METRIC, OPERATION_CHAT, PROVIDER, latestOnly } from './semconv.js';
