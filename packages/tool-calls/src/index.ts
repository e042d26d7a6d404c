export { toolCalls, toolCallsTransform, type ToolCallsOptions } from './transform.js';
export { ChatCompletionAccumulator, accumulateChunks } from './accumulator.js';
export { checkArguments, type ArgumentCheck } from './validate-args.js';
