export { vllm, type VllmAdapter, type AdapterEvents, type PickedReplica } from './adapter.js';
export { vllmOptionsSchema, healthOptionsSchema, timeoutsSchema, type VllmOptions, type HealthOptions, type Timeouts } from './options.js';
export { ClientGone, readResponse, type Attempt } from './attempt.js';
export { parseVllmMetrics } from './health.js';
export type { ReplicaState, ReplicaStatus } from './replica.js';
export { UpstreamFault } from '@tera-gw/circuit-breaker';
