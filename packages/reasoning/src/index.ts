export { reasoning, reasoningTransform, type ReasoningOptions } from './reasoning.js';
