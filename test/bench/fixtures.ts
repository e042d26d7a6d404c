/** A realistic gpt-oss chat completion and SSE stream, served with zero delay so only gateway cost is measured. */

const id = 'chatcmpl-bench0000000000000000000000000000';
const head = `{"id":"${id}","object":"chat.completion.chunk","created":1764000000,"model":"openai/gpt-oss-20b","choices":[`;

export function completionBody(): string {
  return JSON.stringify({
    id,
    object: 'chat.completion',
    created: 1764000000,
    model: 'openai/gpt-oss-20b',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: 'The capital of France is Paris. It has been the capital since the tenth century.',
          refusal: null,
          annotations: null,
          audio: null,
          function_call: null,
          tool_calls: [],
          reasoning: 'The user asks for the capital of France. That is Paris. Answer briefly with one fact.',
        },
        logprobs: null,
        finish_reason: 'stop',
        stop_reason: null,
      },
    ],
    service_tier: null,
    system_fingerprint: null,
    usage: { prompt_tokens: 84, total_tokens: 120, completion_tokens: 36, prompt_tokens_details: null },
    prompt_logprobs: null,
    kv_transfer_params: null,
  });
}

const chunk = (delta: object, finish: string | null = null) =>
  `data: ${head}${JSON.stringify({ index: 0, delta, logprobs: null, finish_reason: finish })}]}\n\n`;

/** `events` SSE events: reasoning deltas, content deltas, one tool call in fragments, finish, usage, [DONE]. */
export function streamBody(events = 1000): string {
  const words = ' the user wants a short answer about caches and replicas so I will explain it clearly'.split(/(?= )/);
  const parts: string[] = [chunk({ role: 'assistant', content: '' })];
  const body = events - 6;
  const reasoning = Math.floor(body * 0.5);
  const content = Math.floor(body * 0.4);
  const tool = body - reasoning - content;
  for (let i = 0; i < reasoning; i++) parts.push(chunk({ reasoning: words[i % words.length] }));
  for (let i = 0; i < content; i++) parts.push(chunk({ content: words[i % words.length] }));
  parts.push(
    chunk({
      tool_calls: [
        {
          id: 'chatcmpl-tool-0123456789abcdef0123456789abcdef',
          type: 'function',
          index: 0,
          function: { name: 'get_weather', arguments: '' },
        },
      ],
    }),
  );
  for (let i = 0; i < tool; i++)
    parts.push(chunk({ tool_calls: [{ index: 0, function: { arguments: i === 0 ? '{"city":"' : i === tool - 1 ? '"}' : 'a' } }] }));
  parts.push(chunk({}, 'tool_calls'));
  parts.push(`data: ${head}],"usage":{"prompt_tokens":84,"total_tokens":1084,"completion_tokens":1000,"prompt_tokens_details":null}}\n\n`);
  parts.push('data: [DONE]\n\n');
  return parts.join('');
}

export const chatRequest = JSON.stringify({
  model: 'openai/gpt-oss-20b',
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is the capital of France?' },
  ],
  max_tokens: 256,
});

export const streamRequest = JSON.stringify({ ...JSON.parse(chatRequest), stream: true });
