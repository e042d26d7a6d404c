import { createServer } from 'node:http';
import {
  SSE_HEADERS,
  createContext,
  applyCompletionTransforms,
  applyRequestTransforms,
  transformSSE,
  type ChatCompletion,
  type ChatCompletionRequest,
} from '@tera-gw/core';
import { harmonyTransform } from '@tera-gw/harmony';
import { reasoningTransform } from '@tera-gw/reasoning';
import { toolCallsTransform } from '@tera-gw/tool-calls';
import { spawnSimulator } from '@tera-gw/vllm-sim';

/**
 * An in-house gateway that already has its own routing and auth adds gpt-oss-20b as a
 * provider: its own `fetch` to vLLM, with only core's SSE transform and the Harmony-repair,
 * reasoning and tool-call transforms around it. No middleware, no framework. PORT (8789),
 * UPSTREAM_URL (one vLLM base URL; unset: an embedded simulator that leaks Harmony, as released
 * vLLM versions do).
 */
const upstream =
  process.env.UPSTREAM_URL ??
  (await spawnSimulator(['--reasoning-field', 'reasoning_content', '--tool-call-quirk', 'single-delta,stop-finish,harmony-tool-name'])).url;

const server = createServer((req, res) => {
  let raw = '';
  req.on('data', (d: Buffer) => (raw += d.toString()));
  req.on('end', () => {
    void (async () => {
      const body = JSON.parse(raw) as ChatCompletionRequest;
      // Per request: the Harmony and tool-call transforms keep state, and read the declared tools.
      // Harmony repair goes first: the others then see clean content, reasoning and tool calls.
      const ctx = createContext();
      ctx.requestTransforms.push(reasoningTransform());
      ctx.responseTransforms.push(harmonyTransform(body), reasoningTransform(), toolCallsTransform(body));
      const upstreamBody = applyRequestTransforms(body, ctx);
      const response = await fetch(`${upstream}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(upstreamBody),
      });
      if (!body.stream || !response.ok || !response.body) {
        const json = (await response.json()) as ChatCompletion;
        res.writeHead(response.status, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(response.ok ? applyCompletionTransforms(json, ctx) : json));
      }
      res.writeHead(200, SSE_HEADERS);
      for await (const bytes of transformSSE(response.body, ctx.responseTransforms, ctx) as unknown as AsyncIterable<Uint8Array>)
        res.write(bytes);
      res.end();
    })().catch((err: unknown) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: String(err), type: 'server_error', code: null, param: null } }));
    });
  });
});
server.listen(Number(process.env.PORT ?? 8789), '127.0.0.1', () => {
  console.log(`in-house gateway listening on http://127.0.0.1:${(server.address() as { port: number }).port} (upstream ${upstream})`);
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(0));
