import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisResponseStore } from '@tera-gw/responses';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { redisAvailable, spawnSim, startRedis, type RedisProcess, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const keys = [
  { key: 'sk-tera-test-key-1', id: 'team-a', models: '*' as const },
  { key: 'sk-tera-test-key-2', id: 'team-b', models: '*' as const },
];
const weather = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Get the current weather for a city',
  strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const withRedis = redisAvailable();

describe.runIf(withRedis)('stored responses in Redis, two gateway hosts', () => {
  let redis: RedisProcess;
  let sim: SimProcess;
  const clients: Redis[] = [];
  let hostA: Mounted;
  let hostB: Mounted;
  const host = async (secrets: string[]) => {
    const client = new Redis(redis.url);
    clients.push(client);
    const gw = await mountGateway('express', {
      replicas: [sim.url],
      auth: { keys },
      upstream: { health: { intervalMs: 200 } },
      responses: { store: new RedisResponseStore({ client, ttlMs: 60_000 }), secrets },
    });
    await gw.gateway.ready();
    return gw;
  };
  beforeAll(async () => {
    [redis, sim] = await Promise.all([startRedis(), spawnSim(['--itl-ms', '1'])]);
    // Host B has rotated: a new secret first, the old one still opens.
    hostA = await host(['the-first-secret-0123456789']);
    hostB = await host(['the-second-secret-0123456789', 'the-first-secret-0123456789']);
  });
  afterAll(async () => {
    await Promise.all([hostA?.close(), hostB?.close()]);
    for (const c of clients) c.disconnect();
    await Promise.all([sim?.kill(), redis?.stop()]);
  });

  it('a response stored through one host is retrieved, listed, continued and deleted through the other', async () => {
    const a = hostA.client();
    const b = hostB.client();
    const first = await a.responses.create({ model, input: 'What is the weather in Paris?', tools: [weather] });
    const call = first.output.find((i) => i.type === 'function_call')!;
    expect((await b.responses.retrieve(first.id)).output).toEqual(first.output);
    expect((await b.responses.inputItems.list(first.id)).data).toHaveLength(1);
    const second = await b.responses.create({
      model,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '18 C' }],
      tools: [weather],
    });
    expect(second.status).toBe('completed');
    expect((await a.responses.inputItems.list(second.id, { order: 'asc' })).data.map((i) => i.type)).toEqual([
      'message',
      'reasoning',
      'function_call',
      'function_call_output',
    ]);
    await expect(hostA.client('sk-tera-test-key-2').responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
    await b.responses.delete(first.id);
    await expect(a.responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
  });

  it('reasoning sealed by one host opens on the other (shared, rotated secrets)', async () => {
    const first = await hostA.client().responses.create({
      model,
      input: 'What is the weather in Paris?',
      tools: [weather],
      store: false,
      include: ['reasoning.encrypted_content'],
    });
    const reasoning = first.output.find((i) => i.type === 'reasoning')!;
    const call = first.output.find((i) => i.type === 'function_call')!;
    const res = await hostB.client().responses.create({
      model,
      store: false,
      tools: [weather],
      input: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { type: 'reasoning', id: reasoning.id, summary: [], encrypted_content: reasoning.encrypted_content },
        call,
        { type: 'function_call_output', call_id: call.call_id, output: '18 C' },
      ],
    });
    expect(res.status).toBe('completed');
  });
});
