import { z } from 'zod';

/**
 * zod schemas and types of the Chat Completions API as this gateway serves it (PROTOCOL.md).
 * Messages keep only the fields the model reads (anything else a client echoes back from an
 * earlier response is dropped, not forwarded); the top level is strict, as OpenAI is.
 */

/** Parts a text-only model cannot read; recognised so the error can say why. */
const nonTextPartTypes = new Set(['image_url', 'input_image', 'input_audio', 'audio', 'file', 'input_file']);

const contentPart = z
  .looseObject({ type: z.string() })
  .check((ctx) => {
    const type = ctx.value.type;
    if (nonTextPartTypes.has(type)) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        path: [],
        message: `Content parts of type '${type}' are not supported: openai/gpt-oss-20b is a text-only model.`,
        params: { tera: 'text_only' },
      });
    } else if (type !== 'text') {
      ctx.issues.push({ code: 'custom', input: ctx.value, path: ['type'], message: `Unknown content part type '${type}'.` });
    } else if (typeof ctx.value.text !== 'string') {
      ctx.issues.push({ code: 'custom', input: ctx.value, path: ['text'], message: 'A text part needs a string `text`.' });
    }
  })
  // Only what the model reads is forwarded: `{type, text}`.
  .transform((part) => ({ type: 'text' as const, text: part.text as string }));

const textContent = z.union([z.string(), z.array(contentPart)]);

export const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const reasoningFields = {
  reasoning: z.string().nullish(),
  reasoning_content: z.string().nullish(),
};

const systemMessage = z.object({ role: z.literal('system'), content: textContent, name: z.string().optional() });
const developerMessage = z.object({ role: z.literal('developer'), content: textContent, name: z.string().optional() });
const userMessage = z.object({ role: z.literal('user'), content: textContent, name: z.string().optional() });
const assistantMessage = z.object({
  role: z.literal('assistant'),
  content: textContent.nullish(),
  name: z.string().optional(),
  refusal: z.string().nullish(),
  tool_calls: z.array(toolCallSchema).optional(),
  ...reasoningFields,
});
const toolMessage = z.object({ role: z.literal('tool'), content: textContent, tool_call_id: z.string() });

export const messageSchema = z.discriminatedUnion('role', [systemMessage, developerMessage, userMessage, assistantMessage, toolMessage]);

const jsonSchemaObject = z.record(z.string(), z.unknown());

export const toolSchema = z.strictObject({
  type: z.literal('function'),
  function: z.strictObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'Tool names must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -.'),
    description: z.string().optional(),
    parameters: jsonSchemaObject.optional(),
    strict: z.boolean().nullish(),
  }),
});

export const toolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) }),
]);

export const responseFormatSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    json_schema: z.strictObject({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'The schema name must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -.'),
      description: z.string().optional(),
      schema: jsonSchemaObject.optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

export const MAX_OUTPUT_TOKENS = 4096;
export const CONTEXT_LENGTH = 131_072;

const outputBudget = z.int().min(1).max(MAX_OUTPUT_TOKENS);
const stopSchema = z.union([z.string(), z.array(z.string()).max(4, 'At most 4 stop sequences are allowed.')]);

/** Fields of OpenAI's API that this model cannot honour; they are refused with the reason, never silently ignored. */
export const UNSUPPORTED_FIELDS: Readonly<Record<string, string>> = {
  audio: 'Audio output is not supported: openai/gpt-oss-20b is a text-only model.',
  logit_bias: '`logit_bias` is not supported by this model.',
  prediction: 'Predicted outputs (`prediction`) are not supported by this model.',
  functions: '`functions` is deprecated and not supported; use `tools`.',
  function_call: '`function_call` is deprecated and not supported; use `tool_choice`.',
  web_search_options: 'Web search is not supported by this model.',
};

/** OpenAI fields the gateway accepts and never forwards upstream (`prompt_cache_key` feeds routing). */
export const LOCAL_ONLY_FIELDS = ['user', 'safety_identifier', 'metadata', 'store', 'service_tier', 'prompt_cache_key'] as const;

const requestShape = {
  model: z.string().min(1),
  messages: z.array(messageSchema).min(1, '`messages` must contain at least one message.'),
  tools: z.array(toolSchema).max(128).optional(),
  tool_choice: toolChoiceSchema.optional(),
  parallel_tool_calls: z.boolean().optional(),
  response_format: responseFormatSchema.optional(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  max_tokens: outputBudget.nullish(),
  max_completion_tokens: outputBudget.nullish(),
  stop: stopSchema.nullish(),
  seed: z.int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  repetition_penalty: z.number().gt(0).max(2).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  reasoning_effort: z.enum(['low', 'medium', 'high']).nullish(),
  n: z.int().nullish(),
  modalities: z.array(z.string()).nullish(),
  user: z.string().optional(),
  safety_identifier: z.string().optional(),
  prompt_cache_key: z.string().max(1024).optional(),
  /** vLLM's prefix-cache salt; the gateway folds it into the tenant's own (it can narrow a partition, never widen it). */
  cache_salt: z.string().max(256).optional(),
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  service_tier: z.string().nullish(),
};

function requestChecks(schema: z.ZodType<Record<string, unknown>>) {
  return schema.check((ctx) => {
    const body = ctx.value as ChatCompletionRequest;
    if (body.n != null && body.n !== 1) {
      ctx.issues.push({ code: 'custom', input: body.n, path: ['n'], message: 'Only n=1 is supported by this gateway.' });
    }
    if (body.modalities != null && body.modalities.some((m) => m !== 'text')) {
      ctx.issues.push({
        code: 'custom',
        input: body.modalities,
        path: ['modalities'],
        message: "Only the 'text' modality is supported: openai/gpt-oss-20b is a text-only model.",
      });
    }
    if (body.top_logprobs != null && body.top_logprobs > 0 && body.logprobs !== true) {
      ctx.issues.push({
        code: 'custom',
        input: body.top_logprobs,
        path: ['top_logprobs'],
        message: '`top_logprobs` requires `logprobs` to be true.',
      });
    }
    if (body.stream_options != null && body.stream !== true) {
      ctx.issues.push({
        code: 'custom',
        input: body.stream_options,
        path: ['stream_options'],
        message: '`stream_options` is only allowed when `stream` is true.',
      });
    }
    const choice = body.tool_choice;
    if (choice !== undefined && choice !== 'none' && choice !== 'auto' && !body.tools?.length) {
      ctx.issues.push({
        code: 'custom',
        input: choice,
        path: ['tool_choice'],
        message: '`tool_choice` needs `tools` to be given.',
      });
    }
    if (typeof choice === 'object' && body.tools?.length && !body.tools.some((t) => t.function.name === choice.function.name)) {
      ctx.issues.push({
        code: 'custom',
        input: choice,
        path: ['tool_choice', 'function', 'name'],
        message: `Tool '${choice.function.name}' named in \`tool_choice\` is not among \`tools\`.`,
      });
    }
  });
}

export const chatCompletionRequestSchema = requestChecks(z.strictObject(requestShape));
/** Lenient deployments: fields no API defines are dropped instead of refused. */
export const lenientChatCompletionRequestSchema = requestChecks(z.object(requestShape));

export type ChatMessage = z.infer<typeof messageSchema>;
export type ChatTool = z.infer<typeof toolSchema>;
export type ChatToolChoice = z.infer<typeof toolChoiceSchema>;
export type ResponseFormat = z.infer<typeof responseFormatSchema>;
export type ToolCall = z.infer<typeof toolCallSchema>;
export type ChatCompletionRequest = z.infer<ReturnType<typeof z.object<typeof requestShape>>>;

// ---- Responses -------------------------------------------------------------------------

export const usageSchema = z.object({
  prompt_tokens: z.number(),
  completion_tokens: z.number(),
  total_tokens: z.number(),
  prompt_tokens_details: z.object({ cached_tokens: z.number().optional() }).nullish(),
  completion_tokens_details: z.object({ reasoning_tokens: z.number().optional() }).nullish(),
});
export type Usage = z.infer<typeof usageSchema>;

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

const logprobsSchema = z.object({ content: z.array(z.unknown()).nullish() }).nullish();

export const chatCompletionSchema = z.looseObject({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number(),
  model: z.string(),
  choices: z.array(
    z.looseObject({
      index: z.number(),
      message: z.looseObject({
        role: z.literal('assistant'),
        content: z.string().nullable(),
        reasoning: z.string().nullish(),
        reasoning_content: z.string().nullish(),
        refusal: z.string().nullish(),
        tool_calls: z.array(toolCallSchema).nullish(),
      }),
      logprobs: logprobsSchema,
      finish_reason: z.string().nullable(),
    }),
  ),
  usage: usageSchema.nullish(),
});

export const toolCallDeltaSchema = z.looseObject({
  index: z.number(),
  id: z.string().nullish(),
  type: z.literal('function').nullish(),
  function: z.looseObject({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
});

export const chatCompletionChunkSchema = z.looseObject({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number(),
  model: z.string(),
  choices: z.array(
    z.looseObject({
      index: z.number(),
      delta: z.looseObject({
        role: z.literal('assistant').nullish(),
        content: z.string().nullish(),
        reasoning: z.string().nullish(),
        reasoning_content: z.string().nullish(),
        tool_calls: z.array(toolCallDeltaSchema).nullish(),
      }),
      logprobs: logprobsSchema,
      finish_reason: z.string().nullish(),
    }),
  ),
  usage: usageSchema.nullish(),
});

export type ChatCompletion = z.infer<typeof chatCompletionSchema>;
export type ChatCompletionMessage = ChatCompletion['choices'][number]['message'];
export type ChatCompletionChunk = z.infer<typeof chatCompletionChunkSchema>;
export type ChunkChoice = ChatCompletionChunk['choices'][number];
export type ToolCallDelta = z.infer<typeof toolCallDeltaSchema>;
