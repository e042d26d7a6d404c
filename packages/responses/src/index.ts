export { responses, type ResponsesStage } from './stage.js';
export { responsesOptionsSchema, type ResponsesOptions } from './options.js';
export {
  MemoryResponseStore,
  RedisResponseStore,
  type ResponseStore,
  type StoredResponse,
  type StoredItems,
  type InputPage,
  type InputPageQuery,
  type StoreBounds,
  type MemoryStoreOptions,
  type RedisResponseStoreOptions,
  type RedisLike,
} from './store.js';
export type * from './types.js';
