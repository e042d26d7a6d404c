import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway } from '@tera-gw/gateway';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/** Code that names another model moves to gpt-oss without a change: aliases, through the openai SDK. */
const model = 'openai/gpt-oss-20b';
let sim: SimProcess;
let gw: Mounted;
const records: UsageRecord[] = [];
beforeAll(async () => {
  sim = await spawnSim(['--itl-ms', '0']);
  gw = await mountGateway('express', {
    replicas: [sim.url],
    auth: {
      keys: [
        { key: 'sk-tera-alias-all-key', id: 'all' },
        { key: 'sk-tera-alias-only-key', id: 'alias-only', models: ['gpt-4o-mini'] },
        { key: 'sk-tera-alias-model-key', id: 'model-only', models: [model] },
      ],
    },
    models: { aliases: { 'gpt-4o-mini': model, 'legacy-model': { model, hidden: true } } },
    upstream: { health: false },
    onUsage: (r) => records.push(r),
  });
});
afterAll(async () => {
  await gw.close();
  await sim.kill();
});

describe('model aliases', () => {
  it('a request for an alias is answered by gpt-oss; the answer, the stream and the usage name the alias', async () => {
    const client = gw.client('sk-tera-alias-all-key');
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data.model).toBe('gpt-4o-mini');
    expect(data.choices[0]!.message.content!.length).toBeGreaterThan(0);
    const id = response.headers.get('x-tera-request-id')!;
    await until(() => records.some((r) => r.requestId === id), 5000, 'the usage record');
    expect(records.find((r) => r.requestId === id)!.model).toBe('gpt-4o-mini');
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const models = new Set<string>();
    for await (const chunk of stream) models.add(chunk.model);
    expect([...models]).toEqual(['gpt-4o-mini']);
    const answer = await client.responses.create({ model: 'gpt-4o-mini', input: 'hi' });
    expect(answer.model).toBe('gpt-4o-mini');
    expect(answer.output_text.length).toBeGreaterThan(0);
  });

  it('/v1/models lists visible aliases; hidden ones still answer', async () => {
    const client = gw.client('sk-tera-alias-all-key');
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual([model, 'gpt-4o-mini']);
    expect((await client.models.retrieve('gpt-4o-mini')).id).toBe('gpt-4o-mini');
    const legacy = await client.chat.completions.create({ model: 'legacy-model', messages: [{ role: 'user', content: 'hi' }] });
    expect(legacy.model).toBe('legacy-model');
  });

  it('key scopes may list the alias or the model', async () => {
    const aliasOnly = gw.client('sk-tera-alias-only-key');
    await expect(
      aliasOnly.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    ).resolves.toBeTruthy();
    await expect(aliasOnly.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 403,
    });
    await expect(
      aliasOnly.chat.completions.create({ model: 'legacy-model', messages: [{ role: 'user', content: 'hi' }] }),
    ).rejects.toMatchObject({
      status: 403,
      message: expect.stringContaining("'legacy-model'") as unknown,
    });
    const modelOnly = gw.client('sk-tera-alias-model-key');
    await expect(
      modelOnly.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    ).resolves.toBeTruthy();
  });

  it('other names are still 404 model_not_found', async () => {
    const client = gw.client('sk-tera-alias-all-key');
    await expect(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });

  it('an alias of a model this gateway does not serve fails at start-up, naming it', () => {
    expect(() => createGateway({ replicas: [sim.url], auth: false, models: { aliases: { 'gpt-4o': 'openai/gpt-oss-120b' } } })).toThrow(
      /alias 'gpt-4o' names 'openai\/gpt-oss-120b'/,
    );
  });
});
