import type { AssembledToolCall } from '@tera-gw/core';

// The tool-call stage's own context field (Hono's ContextVariableMap pattern).
declare module '@tera-gw/core' {
  interface RequestContext {
    /** The calls the model made, as this stage assembled them, for telemetry and logs. */
    toolCalls?: AssembledToolCall[];
  }
}
