import OpenAI from 'openai';

/**
 * The official openai SDK against the running gateway (`pnpm start` in another terminal):
 * a reasoning answer, a streamed answer, a tool-call round trip and a structured output.
 * GATEWAY_URL (the gateway's `/v1`; unset: http://127.0.0.1:$PORT/v1, PORT as `pnpm start` reads it,
 * 8787 by default), TERA_API_KEY (the key `pnpm start` printed).
 */
const baseURL = process.env.GATEWAY_URL ?? `http://127.0.0.1:${process.env.PORT ?? 8787}/v1`;
const apiKey = process.env.TERA_API_KEY;
if (!apiKey) {
  console.error('Set TERA_API_KEY to the key `pnpm start` printed, e.g. TERA_API_KEY=sk-tera-dev-... pnpm demo');
  process.exit(1);
}
const client = new OpenAI({ baseURL, apiKey });
const model = 'openai/gpt-oss-20b';
const heading = (text: string) => console.log(`\n=== ${text}`);

heading('1. A reasoning answer');
const answer = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'Why is the sky blue?' }],
  reasoning_effort: 'low',
});
const message = answer.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning?: string };
console.log(`reasoning: ${message.reasoning}\nanswer:    ${message.content}\nusage:     ${JSON.stringify(answer.usage)}`);

heading('2. A streamed answer (reasoning deltas, then content deltas)');
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'Count to five.' }],
  stream: true,
  stream_options: { include_usage: true },
});
let phase = '';
for await (const chunk of stream) {
  const delta = chunk.choices[0]?.delta as { content?: string; reasoning?: string } | undefined;
  const next = delta?.reasoning ? 'reasoning' : delta?.content ? 'content' : phase;
  if (next !== phase) process.stdout.write(`\n[${(phase = next)}] `);
  process.stdout.write(delta?.reasoning ?? delta?.content ?? '');
  if (chunk.usage) process.stdout.write(`\n[usage] ${JSON.stringify(chunk.usage)}`);
}
console.log();

heading('3. A tool-call round trip');
const tools: OpenAI.ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    },
  },
];
const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
const first = await client.chat.completions.stream({ model, messages, tools }).finalChatCompletion();
const call = first.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
console.log(`the model calls ${call.function.name}(${call.function.arguments})`);
messages.push(first.choices[0]!.message, {
  role: 'tool',
  tool_call_id: call.id,
  content: JSON.stringify({ temperature_c: 18, sky: 'clear' }),
});
const second = await client.chat.completions.create({ model, messages, tools });
console.log(`then answers: ${second.choices[0]!.message.content}`);

heading('4. A structured output');
const structured = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'Describe a city.' }],
  response_format: {
    type: 'json_schema',
    json_schema: {
      name: 'city',
      strict: true,
      schema: {
        type: 'object',
        properties: { name: { type: 'string' }, population: { type: 'integer' }, sights: { type: 'array', items: { type: 'string' } } },
        required: ['name', 'population', 'sights'],
        additionalProperties: false,
      },
    },
  },
});
console.log(JSON.stringify(JSON.parse(structured.choices[0]!.message.content!), null, 2));

heading('5. The Responses API: a streamed tool-calling turn, continued with previous_response_id');
const weatherTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Get the current weather for a city',
  strict: true,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
};
const turn = client.responses.stream({ model, input: 'What is the weather in Paris?', tools: [weatherTool], reasoning: { effort: 'low' } });
for await (const event of turn) {
  if (event.type === 'response.reasoning_text.delta') process.stdout.write(event.delta);
  if (event.type === 'response.output_item.done' && event.item.type === 'function_call')
    console.log(`\nthe model calls ${event.item.name}(${event.item.arguments})`);
}
const called = await turn.finalResponse();
const fc = called.output.find((item) => item.type === 'function_call')!;
const followUp = await client.responses.create({
  model,
  previous_response_id: called.id,
  input: [{ type: 'function_call_output', call_id: fc.call_id, output: JSON.stringify({ temperature_c: 18, sky: 'clear' }) }],
  tools: [weatherTool],
});
console.log(`then answers: ${followUp.output_text}\nusage: ${JSON.stringify(followUp.usage)}`);
const stored = await client.responses.inputItems.list(followUp.id, { order: 'asc' });
console.log(`stored input items of ${followUp.id}: ${stored.data.map((item) => item.type).join(', ')}`);
