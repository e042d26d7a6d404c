// The budget stage's own context field (Hono's ContextVariableMap pattern).
declare module '@tera-gw/core' {
  interface RequestContext {
    /** What was left of the key's budget when this request was admitted, for the remaining-budget gauge. */
    budgetRemaining?: { usd?: number; tokens?: number };
  }
}
export {};
