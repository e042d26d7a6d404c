export { ReplicaBreaker, UpstreamFault, type BreakerEvents, type BreakerState } from './breaker.js';
export { breakerOptionsSchema, type BreakerOptions } from './options.js';
