export {
  createRouter,
  leastRequest,
  type ReplicaView,
  type RouteRequest,
  type Router,
  type RouterOptions,
  type Weights,
} from './router.js';
export { PrefixIndex, prefixBlocks, type PromptParts } from './prefix.js';
