export { ReplicaBreaker, UpstreamFault, createBreaker, type BreakerEvents, type BreakerOptions, type BreakerState } from './breaker.js';
