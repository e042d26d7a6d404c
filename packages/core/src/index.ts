export {
  TeraError,
  toTeraError,
  invalidRequest,
  authenticationError,
  permissionError,
  modelNotFound,
  rateLimitError,
  serverError,
  serviceUnavailable,
  type ErrorBody,
  type TeraErrorType,
  type TeraErrorOptions,
} from './errors.js';
export {
  CONTEXT_LENGTH,
  MAX_OUTPUT_TOKENS,
  chatCompletionRequestSchema,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionMessage,
  type ChatCompletionRequest,
  type ChatMessage,
  type ChatTool,
  type ChatToolChoice,
  type ChunkChoice,
  type FinishReason,
  type ResponseFormat,
  type ToolCall,
  type ToolCallDelta,
  type Usage,
} from './schema.js';
export {
  context,
  createContext,
  finishContext,
  recordEvent,
  keyIdOf,
  type AttemptRecord,
  type RequestEvent,
  type RequestContext,
  type AuthenticatedKey,
  type AssembledToolCall,
  type UpstreamOutcome,
  type OutputFormat,
} from './context.js';
export { applyRequestTransforms, applyCompletionTransforms, markChanged, type ChatTransform } from './transform.js';
export { SSE_HEADERS } from './sse.js';
export { transformSSE } from './transform-sse.js';
export { createChunkPipeline, errorEventText, type ChunkPipeline, type ChunkPipelineOptions } from './pipeline.js';
export {
  readUpstreamError,
  toPublicUpstreamError,
  classifyUpstreamError,
  upstreamErrorMessage,
  modelOutputError,
  streamFailureError,
  ModelOutputFailure,
  RequestFailure,
  UPSTREAM_FAILED_MESSAGE,
  MAX_UPSTREAM_MESSAGE,
  type ModelFailureKind,
  type ReplicaFailure,
  type StreamFailure,
  type UpstreamVerdict,
} from './upstream-errors.js';
export {
  sendJSON,
  sendError,
  startEventStream,
  isEventStream,
  readBody,
  errorHandler,
  clientErrorHandler,
  DEFAULT_MAX_BODY_BYTES,
  LINGER_LIMITS,
  type Middleware,
  type ErrorMiddleware,
  type NextFunction,
  type ReadBodyOptions,
} from './http.js';
export { validate, validateChatRequest, readJSONBody, issueToError, validateOptionsSchema, type ValidateOptions } from './validate.js';
export {
  compileSchema,
  stepBudget,
  patternBudget,
  SchemaTooComplex,
  DEFAULT_SCHEMA_LIMITS,
  DEFAULT_STEP_BUDGET,
  type CompiledSchema,
  type PatternBudget,
  type SchemaCheck,
  type SchemaLimits,
  type StepBudget,
} from './json-schema.js';
export { loadTokenizer, tokenizerLoaded, countTextTokens, countPromptTokens, messageText, type CountOptions } from './tokens.js';
export { GPT_OSS_20B, GPT_OSS_20B_INFO, PRICE_PER_MILLION, costUSD, type ModelInfo } from './models.js';
export { requestId, modelsHandler, fallbackHandler, DEFAULT_ROUTES, type RouteTable } from './endpoints.js';
export { compose } from './compose.js';
export type { UpstreamPool, PoolTicket } from './pool.js';
export { promptTokensBound, estimatedPromptTokens, outputTokensCap } from './cost.js';
export { parseOptions, optionProblem, describeIssue, implementing, fn } from './options.js';
export { consoleLogger, guarded, throttled, type Logger } from './log.js';
export { validTraceparent, validTracestate } from './trace-context.js';
export { deriveChunk, newToolCallId, type ReasoningFields } from './chunks.js';
