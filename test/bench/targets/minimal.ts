import { Agent, createServer, request } from 'node:http';

/** Experiment: the least a parse-once proxy must do (read, parse, send, read, parse, serialize). */
const upstream = new URL(process.env.UPSTREAM_URL!);
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

const server = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>;
    const payload = Buffer.from(JSON.stringify(body));
    const up = request(
      {
        agent,
        hostname: upstream.hostname,
        port: upstream.port,
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (r) => {
        const out: Buffer[] = [];
        r.on('data', (d: Buffer) => out.push(d));
        r.on('end', () => {
          const text = JSON.stringify(JSON.parse(Buffer.concat(out).toString()));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          res.end(text);
        });
      },
    );
    up.end(payload);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`minimal listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
