export { telemetry, type TelemetryOptions, type TelemetryStage, type UsageRecord } from './telemetry.js';
export { ATTR, METRIC, OPERATION_CHAT, PROVIDER, latestOnly } from './semconv.js';
