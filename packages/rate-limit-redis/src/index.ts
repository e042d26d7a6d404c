export { RedisStore, type RedisStoreOptions } from './redis-store.js';
export { RedisBudgetStore, type RedisBudgetStoreOptions } from './budget-store.js';
export { connectionSchema, type RedisConnectionOptions } from './connection.js';
