import { Agent, createServer, request } from 'node:http';

/** The physical limit for a Node proxy: pipe the request and the response, keep-alive upstream, nothing else. */
const upstream = new URL(process.env.UPSTREAM_URL!);
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

const server = createServer((req, res) => {
  const proxied = request(
    { agent, hostname: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  proxied.on('error', () => res.destroy());
  req.pipe(proxied);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`pipe-proxy listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
