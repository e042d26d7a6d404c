import type { AssembledToolCall } from '@tera-gw/core';

// What telemetry reads of other stages' context fields, declared as they declare them
// (Hono's ContextVariableMap pattern): core's context names no stage's concept.
declare module '@tera-gw/core' {
  interface RequestContext {
    /** Set by `budgets()`: what was left of the key's budget when this request was admitted. */
    budgetRemaining?: { usd?: number; tokens?: number };
    /** Set by the tool-call stage when the model called tools. */
    toolCalls?: AssembledToolCall[];
  }
}
