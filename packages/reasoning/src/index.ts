export { reasoning, reasoningTransform } from './reasoning.js';
export { reasoningOptionsSchema, type ReasoningOptions } from './options.js';
