export { vllm, type VllmAdapter, type VllmOptions, type AdapterEvents, type PickedReplica } from './adapter.js';
export { ClientGone, readResponse, type Attempt, type Timeouts } from './attempt.js';
export { parseVllmMetrics, type HealthOptions } from './health.js';
export type { ReplicaState, ReplicaStatus } from './replica.js';
export { classify, type UpstreamVerdict } from './outcome.js';
export { UpstreamFault } from '@tera-gw/circuit-breaker';
