import { z } from 'zod';

export const toolCallsOptionsSchema = z.strictObject({
  /**
   * Tool calls whose arguments are not JSON, or do not satisfy the declared schema: `pass`
   * them (marked on the context for telemetry) or `error` (the stream ends with an error
   * event; a non-streamed response becomes a 500).
   * @defaultValue `'pass'`
   */
  onInvalid: z.enum(['pass', 'error']).default('pass'),
  /**
   * `incremental` relays argument fragments as they arrive (OpenAI's shape); `buffered` sends
   * each call as one complete delta, for clients that cannot concatenate fragments.
   * @defaultValue `'incremental'`
   */
  mode: z.enum(['incremental', 'buffered']).default('incremental'),
});

export type ToolCallsOptions = z.input<typeof toolCallsOptionsSchema>;
