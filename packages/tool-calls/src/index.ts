export { toolCalls, toolCallsTransform } from './transform.js';
export { toolCallsOptionsSchema, type ToolCallsOptions } from './options.js';
export { ChatCompletionAccumulator, accumulateChunks } from './accumulator.js';
export { checkArguments, type ArgumentCheck } from './validate-args.js';
