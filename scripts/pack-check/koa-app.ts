// Installed from the packed tarballs, compiled with strict tsc: the README's Koa mounting, no Express.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import mount from 'koa-mount';
import OpenAI from 'openai';
import { koaGateway } from '@tera-gw/koa';
import { startSimulator } from '@tera-gw/vllm-sim';

const sim = await startSimulator({});
const keys = [{ key: 'sk-tera-pack-check-2', id: 'team-b', models: '*' as const }];
const gateway = koaGateway({ replicas: [sim.url], auth: { keys } });
const app = new Koa();
app.use(mount('/v1', gateway));
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
await gateway.ready();
const client = new OpenAI({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, apiKey: 'sk-tera-pack-check-2' });
const chat = await client.chat.completions.create({ model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }] });
if (!chat.choices[0]?.message.content) throw new Error('no answer through Koa');
console.log('pack-check koa: answered');
await gateway.close();
server.close();
await sim.close();
