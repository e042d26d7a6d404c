import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '@tera-gw/core';
import type { Sim } from './sim.js';

/** vLLM's `/tokenize` (`{prompt}` or `{messages}` -> `{count, max_model_len, tokens, token_strs}`) and `/detokenize` (`{tokens}` -> `{prompt}`). */
export async function tokenization(sim: Sim, req: IncomingMessage, res: ServerResponse, encodeIt: boolean): Promise<void> {
  const { model, maxModelLen } = sim;
  let body: { model?: unknown; prompt?: unknown; messages?: unknown; tokens?: unknown };
  try {
    body = JSON.parse((await readBody(req)).toString('utf8')) as typeof body;
  } catch {
    return sim.error(res, 400, 'BadRequestError', 'The request body is not valid JSON.');
  }
  if (body.model !== undefined && body.model !== model)
    return sim.error(res, 404, 'NotFoundError', `The model \`${JSON.stringify(body.model)}\` does not exist.`, 'model');
  const tokenizer = await import('gpt-tokenizer/encoding/o200k_harmony');
  if (encodeIt) {
    let text: string;
    if (typeof body.prompt === 'string') text = body.prompt;
    else if (Array.isArray(body.messages))
      text = (body.messages as Array<{ content?: unknown }>).map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
    else return sim.error(res, 400, 'BadRequestError', 'Either `prompt` or `messages` is required.', 'prompt');
    const tokens = tokenizer.encode(text, { disallowedSpecial: new Set() });
    return sim.json(res, 200, JSON.stringify({ count: tokens.length, max_model_len: maxModelLen, tokens, token_strs: null }));
  }
  if (!Array.isArray(body.tokens) || !body.tokens.every((t) => Number.isInteger(t) && (t as number) >= 0))
    return sim.error(res, 400, 'BadRequestError', '`tokens` must be a list of token ids.', 'tokens');
  sim.json(res, 200, JSON.stringify({ prompt: tokenizer.decode(body.tokens as number[]) }));
}
