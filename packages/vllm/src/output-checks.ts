import { ModelOutputFailure, compileSchema, stepBudget, type ChatCompletion, type ChatCompletionRequest } from '@tera-gw/core';

/**
 * The check a `response_format` asks for, or undefined: `json_schema` with `strict: true`
 * (valid JSON that satisfies the schema, on core's bounded checker) and `json_object` (valid
 * JSON). Some vLLM releases break both when reasoning is on (vllm#23120, #37359, #44012).
 */
export function structuredOutputCheck(
  request: Pick<ChatCompletionRequest, 'response_format'> | undefined,
): ((content: string) => ModelOutputFailure | undefined) | undefined {
  const format = request?.response_format;
  if (format?.type === 'json_object') return (content) => (parseJSON(content) === NOT_JSON ? notJSON() : undefined);
  if (format?.type !== 'json_schema' || format.json_schema.strict !== true) return undefined;
  const schema = format.json_schema.schema;
  const compiled = schema ? compileSchema(schema) : undefined;
  return (content) => {
    const value = parseJSON(content);
    if (value === NOT_JSON) return notJSON();
    const result = compiled?.check(value, stepBudget());
    if (!result || result.valid !== false) return undefined;
    return new ModelOutputFailure('schema_violation', `${result.at || '/'} ${result.problem}`);
  };
}

const NOT_JSON = Symbol('not JSON');
function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return NOT_JSON;
  }
}
const notJSON = () => new ModelOutputFailure('invalid_json', 'the content is not valid JSON');

/**
 * vllm#41902: tokens were generated, yet content, reasoning and tool calls are all empty.
 * `length` is left alone: a budget of a few tokens can rightly end inside Harmony's framing.
 */
export function isEmptyCompletion(completion: ChatCompletion): boolean {
  const choice = completion.choices[0];
  if (!choice || choice.finish_reason === 'length') return false;
  if ((completion.usage?.completion_tokens ?? 1) === 0) return false;
  const message = choice.message as ChatCompletion['choices'][number]['message'] & {
    reasoning?: string | null;
    reasoning_content?: string | null;
  };
  return !message.content && !message.reasoning && !message.reasoning_content && !message.tool_calls?.length;
}
