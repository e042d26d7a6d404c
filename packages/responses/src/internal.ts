/**
 * What tests and the benches reach of the Responses package, beyond its documented face:
 * `@tera-gw/responses/internal`. No stability promise.
 */
export {
  parseResponsesRequest,
  responsesRequestSchema,
  normalizeItem,
  itemsToMessages,
  translateTools,
  translateToolChoice,
  flatToolName,
  HOSTED_TOOL_TYPES,
  type ResponsesRequest,
  type ToolName,
  type ToolTranslation,
} from './request.js';
export { completionToResponse, ResponsesStreamEncoder, type ResponseSettings } from './output.js';
export { createSealer, type Sealer } from './seal.js';
