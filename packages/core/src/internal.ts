/**
 * What sibling packages need and users do not: `@tera-gw/core/internal`. No stability promise;
 * the public face is `@tera-gw/core`.
 */
export { lenientChatCompletionRequestSchema } from './schema.js';
export { observeTokenizerPieces, shortTokenMemoSize, SHORT_TOKEN_MEMO_ENTRIES, MAX_PIECE_CHARS } from './tokens.js';
export { patternCompilations } from './json-schema.js';
export { regexProgramSize } from './regex-size.js';
