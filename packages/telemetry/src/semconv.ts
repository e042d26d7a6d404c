/**
 * Attribute and metric names, in one place. The GenAI semantic conventions are in
 * Development status; their transition plan: `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
 * emits only the newest names, otherwise the name an earlier release used is emitted too.
 */
export const ATTR = {
  operationName: 'gen_ai.operation.name',
  providerName: 'gen_ai.provider.name',
  /** Replaced by gen_ai.provider.name; still emitted unless the latest names are opted in. */
  system: 'gen_ai.system',
  requestModel: 'gen_ai.request.model',
  requestMaxTokens: 'gen_ai.request.max_tokens',
  requestTemperature: 'gen_ai.request.temperature',
  requestTopP: 'gen_ai.request.top_p',
  requestTopK: 'gen_ai.request.top_k',
  requestSeed: 'gen_ai.request.seed',
  requestFrequencyPenalty: 'gen_ai.request.frequency_penalty',
  requestPresencePenalty: 'gen_ai.request.presence_penalty',
  requestStopSequences: 'gen_ai.request.stop_sequences',
  requestChoiceCount: 'gen_ai.request.choice.count',
  outputType: 'gen_ai.output.type',
  responseId: 'gen_ai.response.id',
  responseModel: 'gen_ai.response.model',
  responseFinishReasons: 'gen_ai.response.finish_reasons',
  usageInputTokens: 'gen_ai.usage.input_tokens',
  usageOutputTokens: 'gen_ai.usage.output_tokens',
  tokenType: 'gen_ai.token.type',
  inputMessages: 'gen_ai.input.messages',
  outputMessages: 'gen_ai.output.messages',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  errorType: 'error.type',
  httpStatus: 'http.response.status_code',
  // Ours.
  requestId: 'tera.request_id',
  keyId: 'tera.key_id',
  replica: 'tera.replica',
  attempts: 'tera.attempts',
  attempt: 'tera.attempt',
  stream: 'tera.stream',
  clientAborted: 'tera.client_aborted',
  reasoningTokens: 'tera.usage.reasoning_tokens',
  cachedTokens: 'tera.usage.cached_tokens',
  toolCalls: 'tera.tool_calls',
  toolCallsInvalid: 'tera.tool_calls.invalid',
  toolNames: 'tera.tool_calls.names',
  costUSD: 'tera.cost_usd',
  breakerState: 'tera.breaker.state',
  queueMs: 'tera.queue.ms',
  servedBy: 'tera.served_by',
} as const;

export const METRIC = {
  tokenUsage: 'gen_ai.client.token.usage',
  operationDuration: 'gen_ai.client.operation.duration',
  timeToFirstToken: 'gen_ai.server.time_to_first_token',
  timePerOutputToken: 'gen_ai.server.time_per_output_token',
  requests: 'tera.requests',
  inFlight: 'tera.requests.in_flight',
  replicaReady: 'tera.replica.ready',
  breakerTransitions: 'tera.breaker.transitions',
  repairs: 'tera.repairs',
  queueDuration: 'tera.queue.duration',
} as const;

export const OPERATION_CHAT = 'chat';
/** vLLM is not among the conventions' well-known providers; the model's API is OpenAI's. */
export const PROVIDER = 'vllm';

export function latestOnly(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.OTEL_SEMCONV_STABILITY_OPT_IN ?? '')
    .split(',')
    .map((s) => s.trim())
    .includes('gen_ai_latest_experimental');
}

/** Token-count buckets the conventions advise for gen_ai.client.token.usage. */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
/** Seconds buckets for durations and time to first token. */
export const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
export const PER_TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];
