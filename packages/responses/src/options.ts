import { z } from 'zod';
import { implementing, validateOptionsSchema } from '@tera-gw/core';
import type { ResponseStore } from './store.js';

export const responsesOptionsSchema = z.strictObject({
  /**
   * Where `store: true` responses live (memory by default; `RedisResponseStore` for several hosts).
   * `false` promises zero retention: nothing is stored whatever the caller asks, and
   * `previous_response_id` is refused with a 400 that says to send the output items back instead.
   * @defaultValue a `MemoryResponseStore`
   */
  store: z
    .union([
      z.literal(false),
      implementing<ResponseStore>('a ResponseStore', 'put', 'responseText', 'conversation', 'item', 'inputPage', 'delete'),
    ])
    .optional(),
  /**
   * Secrets that seal reasoning for `include: ['reasoning.encrypted_content']`: the first seals,
   * all open (rotation). Give every gateway host the same list. Unset: a random secret per
   * process, so sealed items open only on the process that made them.
   */
  secrets: z.array(z.string().min(16, 'each secret needs at least 16 characters')).optional(),
  /**
   * OpenAI's hosted tools (`web_search`, `file_search`, `code_interpreter`, `mcp`...): `drop`
   * leaves them out with a span event (the Codex CLI always sends `web_search`); `reject` answers 400 naming the tool.
   * @defaultValue `'drop'`
   */
  hostedTools: z.enum(['drop', 'reject']).default('drop'),
  /** Body limit, context length and the model served, as for chat. */
  validation: validateOptionsSchema.pick({ maxBodyBytes: true, contextLength: true, model: true, aliases: true }).optional(),
});

export type ResponsesOptions = z.input<typeof responsesOptionsSchema>;
