import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CaptureUpstream {
  url: string;
  /** Every request that reached it (health and metrics probes aside): path, headers and raw body. */
  requests: Array<{ path: string; headers: IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}

const model = 'openai/gpt-oss-20b';
const completion = JSON.stringify({
  id: 'chatcmpl-capture',
  object: 'chat.completion',
  created: 1,
  model,
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});
const stream = `data: ${JSON.stringify({ id: 'chatcmpl-capture', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;

/**
 * A stand-in replica that records what reaches it and answers a fixed completion (or a
 * one-event stream when asked to stream). `GET /health` is 200; `GET /metrics` is 404, as a
 * replica that exports none.
 */
export async function startCaptureUpstream(
  /** Answers a chat request itself (a scripted replica); the default answer otherwise. */
  answer?: (body: string, res: ServerResponse, path: string) => void,
): Promise<CaptureUpstream> {
  const requests: CaptureUpstream['requests'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/health') return void res.end();
      if (req.url === '/metrics') {
        res.statusCode = 404;
        return void res.end();
      }
      requests.push({ path: req.url ?? '/', headers: req.headers, body });
      if (answer) return answer(body, res, req.url ?? '/');
      if (body.includes('"stream":true')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        return void res.end(stream);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
