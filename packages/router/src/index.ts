export { leastRequest, createRouter, type ReplicaView, type RouteRequest, type Router, type RouterOptions } from './router.js';
