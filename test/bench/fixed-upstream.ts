import { createServer } from 'node:http';
import { completionBody, streamBody } from './fixtures.js';

/** The fixed upstream: answers every chat request at once, JSON or SSE as asked. Also Node's bare `http` baseline. */
const completion = Buffer.from(completionBody());
const stream = Buffer.from(streamBody(Number(process.env.BENCH_STREAM_EVENTS ?? 1000)));

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/health') return void res.end();
    const wantsStream = Buffer.concat(chunks).includes('"stream":true');
    if (wantsStream) {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.end(stream);
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': completion.length });
      res.end(completion);
    }
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(`fixed-upstream listening on http://127.0.0.1:${address.port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
