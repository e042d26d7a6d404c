/**
 * What sibling packages need and users do not: `@tera-gw/core/internal`. No stability promise;
 * the public face is `@tera-gw/core`.
 */
export { lenientChatCompletionRequestSchema } from './schema.js';
