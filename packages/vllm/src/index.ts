export { vllm, type VllmAdapter, type AdapterEvents, type PickedReplica } from './adapter.js';
export { vllmOptionsSchema, healthOptionsSchema, timeoutsSchema, type VllmOptions, type HealthOptions, type Timeouts } from './options.js';
export { ClientGone, readResponse, type Attempt } from './attempt.js';
export { parseVllmMetrics } from './health.js';
export type { ReplicaState, ReplicaStatus } from './replica.js';
export { classify, type UpstreamVerdict } from './outcome.js';
export { UpstreamFault } from '@tera-gw/circuit-breaker';
