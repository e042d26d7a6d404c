import { describe, expect, it } from 'vitest';
import { classifyUpstreamError } from '../src/index.js';

/** Bodies as released vLLM versions sent them (nested and flat error objects, plain text from a proxy). */
const nested = (message: string, type = 'InternalServerError', code = 500) =>
  JSON.stringify({ error: { message, type, param: null, code } });
const flat = (message: string, type = 'BadRequestError', code = 400) =>
  JSON.stringify({ object: 'error', message, type, param: null, code });

describe('classifyUpstreamError', () => {
  it.each([
    [500, nested('openai_harmony.HarmonyError: Unexpected token 200002 while expecting start token 200006')],
    [400, flat('unexpected tokens remaining in message header: Some("to=functions.get_weather<|channel|>commentary json")')],
    [200, nested('HarmonyError: Unknown role: assistantanalysis')],
    [0, nested('channel marker present but no channel value found in header')],
    [400, nested('openai_harmony.HarmonyError: Unexpected token 200005 while expecting start token 200006', 'BadRequestError', 400)],
  ])('a Harmony parser error is the model output, whatever the framing (%i)', (status, body) => {
    expect(classifyUpstreamError(status, body)).toMatchObject({ owner: 'model', failure: { kind: 'harmony_error' } });
  });

  it('vLLM 400s about the request are the caller: context length keeps its code, others pass capped', () => {
    const overflow = classifyUpstreamError(
      400,
      flat(
        "This model's maximum context length is 131072 tokens. However, you requested 140000 tokens (139000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
      ),
    );
    expect(overflow).toMatchObject({ owner: 'caller', error: { status: 400, code: 'context_length_exceeded', param: 'messages' } });
    const long = classifyUpstreamError(400, nested('x'.repeat(5000), 'BadRequestError', 400));
    expect(long.owner === 'caller' && long.error.message.length).toBe(503);
  });

  it('a JSON 500 for one request is the request (not counted against the replica); its text stays internal', () => {
    const verdict = classifyUpstreamError(500, nested('ValueError: bad prompt at /opt/vllm/x.py, key sk-internal'));
    expect(verdict).toMatchObject({ owner: 'request' });
  });

  it.each([
    [500, nested('EngineCore encountered an issue. See stack trace (above) for the root cause.')],
    [500, nested('EngineDeadError: background loop has errored already.')],
    [500, '<html><body>Internal Server Error</body></html>'],
    [502, 'Bad Gateway'],
    [503, nested('The server is temporarily unable to serve requests.', 'ServiceUnavailableError', 503)],
    [504, ''],
    [200, nested('something unexpected')],
  ])('the replica: a dead engine, a non-JSON 5xx, a proxy status, a 200 error object (%i)', (status, body) => {
    expect(classifyUpstreamError(status, body).owner).toBe('replica');
  });
});
