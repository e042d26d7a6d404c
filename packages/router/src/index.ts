export { createRouter, leastRequest, type ReplicaView, type RouteRequest, type Router } from './router.js';
export { routerOptionsSchema, type RouterOptions, type Weights } from './options.js';
export { PrefixIndex, prefixBlocks, type PromptParts } from './prefix.js';
