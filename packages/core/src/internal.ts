/**
 * What sibling packages need and users do not: `@tera-gw/core/internal`. No stability promise;
 * the public face is `@tera-gw/core`.
 */
export { lenientChatCompletionRequestSchema } from './schema.js';
export { observeTokenizerPieces, shortTokenMemoSize, SHORT_TOKEN_MEMO_ENTRIES, MAX_PIECE_CHARS } from './tokens.js';
export { patternCompilations } from './json-schema.js';
export { regexProgramSize } from './regex-size.js';
export { ANONYMOUS_KEY_ID, newRequestId } from './context.js';
export { applyChunkTransforms, applyEndTransforms, isChanged, transformsMarkChanges } from './transform.js';
export {
  SSE_DONE,
  DEFAULT_MAX_EVENT_BYTES,
  encodeChunk,
  encodeRawChunk,
  withoutUsageMember,
  encodeErrorEvent,
  createUpstreamSSEDecoder,
  type UpstreamSSEDecoder,
  type UpstreamSSEHandlers,
} from './sse.js';
export { formatParam, contextLengthExceeded, MAX_JSON_DEPTH } from './validate.js';
export { countPromptTokensSync, decodeTokenIds } from './tokens.js';
