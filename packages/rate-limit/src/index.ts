export { rateLimit, admissionCost } from './rate-limit.js';
export { rateLimitOptionsSchema, budgetOptionsSchema, type RateLimitOptions, type BudgetOptions } from './options.js';
export { MemoryStore } from './memory-store.js';
export { refill, type AcquireRequest, type AcquireResult, type LimitState, type Store } from './store.js';
export {
  budgets,
  budgetPeriod,
  usageCost,
  MemoryBudgetStore,
  type Budget,
  type BudgetAmounts,
  type BudgetStore,
  type ReserveRequest,
  type ReserveResult,
} from './budgets.js';
