// Installed from the packed tarballs, compiled with strict tsc: the README's Express mounting.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import OpenAI from 'openai';
import { createGateway, type GatewayOptions } from '@tera-gw/gateway';
import { startSimulator } from '@tera-gw/vllm-sim';

const sim = await startSimulator({});
const usage: string[] = [];
const options: GatewayOptions = {
  replicas: [sim.url],
  auth: { keys: [{ key: 'sk-tera-pack-check-1', id: 'team-a', models: '*' }] },
  // Typed: record is a UsageRecord, not unknown.
  onUsage: (record) => void usage.push(`${record.keyId ?? '-'}:${record.totalTokens ?? 0}`),
};
const gateway = createGateway(options);
const app = express();
app.get('/health', gateway.health);
app.use('/v1', gateway);
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
await gateway.ready();
const client = new OpenAI({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, apiKey: 'sk-tera-pack-check-1' });
const chat = await client.chat.completions.create({ model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }] });
const response = await client.responses.create({ model: 'openai/gpt-oss-20b', input: 'hi' });
if (!chat.choices[0]?.message.content || response.status !== 'completed' || usage.length !== 2 || !usage[0]?.startsWith('team-a:'))
  throw new Error(`unexpected answers: ${JSON.stringify({ chat: chat.choices[0], status: response.status, usage })}`);
console.log(`pack-check express: chat and responses answered, usage ${usage.join(', ')}`);
await gateway.close();
server.close();
await sim.close();
