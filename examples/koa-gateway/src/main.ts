import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import mount from 'koa-mount';
import { koaGateway } from '@tera-gw/koa';
import { spawnSimulator, type SimulatorProcess } from '@tera-gw/vllm-sim';

/** The same gateway in a Koa app. PORT (8788), HOST, UPSTREAM_URLS as in express-gateway. */
const port = Number(process.env.PORT ?? 8788);
const host = process.env.HOST ?? '127.0.0.1';
const sims: SimulatorProcess[] = [];
let replicas = (process.env.UPSTREAM_URLS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
if (!replicas.length) {
  sims.push(...(await Promise.all([0, 1].map(() => spawnSimulator(['--ttft-ms', '80', '--itl-ms', '8'])))));
  replicas = sims.map((s) => s.url);
}
const key = process.env.GATEWAY_KEY ?? `sk-tera-dev-${randomBytes(18).toString('base64url')}`;
const gateway = koaGateway({ replicas, auth: { keys: [{ key, id: 'dev' }] } });

const app = new Koa();
app.use(mount('/health', gateway.health));
app.use(mount('/metrics', gateway.metrics));
app.use(mount('/v1', gateway));
const server = app.listen(port, host, () => {
  console.log(`gateway listening on http://${host}:${port}`);
  console.log(`development API key (this run only): ${key}`);
});
server.headersTimeout = 15_000;
server.requestTimeout = 60_000;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close();
    void gateway
      .close()
      .then(() => Promise.all(sims.map((s) => s.close())))
      .then(() => process.exit(0));
  });
}
