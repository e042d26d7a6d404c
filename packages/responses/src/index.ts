export { responses, type ResponsesStage } from './stage.js';
export { responsesOptionsSchema, type ResponsesOptions } from './options.js';
export {
  parseResponsesRequest,
  responsesRequestSchema,
  normalizeItem,
  itemsToMessages,
  translateTools,
  translateToolChoice,
  flatToolName,
  HOSTED_TOOL_TYPES,
  type ResponsesRequest,
  type ToolName,
  type ToolTranslation,
} from './request.js';
export { completionToResponse, ResponsesStreamEncoder, type ResponseSettings } from './output.js';
export { createSealer, type Sealer } from './seal.js';
export {
  MemoryResponseStore,
  RedisResponseStore,
  type ResponseStore,
  type StoredResponse,
  type StoreBounds,
  type MemoryStoreOptions,
  type RedisResponseStoreOptions,
  type RedisLike,
} from './store.js';
export type * from './types.js';
