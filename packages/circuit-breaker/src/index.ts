export { ReplicaBreaker, UpstreamFault, type BreakerEvents, type BreakerOptions, type BreakerState } from './breaker.js';
