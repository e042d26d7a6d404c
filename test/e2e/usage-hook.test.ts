import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordingLogger } from '../helpers/logger.js';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

let sim: SimProcess;
let gw: Mounted;
let calls = 0;
const logger = recordingLogger();
beforeAll(async () => {
  sim = await spawnSim(['--itl-ms', '1']);
  gw = await mountGateway('express', {
    replicas: [sim.url],
    auth: { keys: [{ key: 'sk-tera-hook-key-1', id: 'hook' }] },
    upstream: { health: false },
    logger,
    onUsage: () => {
      calls++;
      throw new Error('billing database down');
    },
  });
});
afterAll(async () => {
  await gw.close();
  await sim.kill();
});

describe('a throwing onUsage hook', () => {
  it('is logged with the request id, and neither the answer nor the next request suffers', async () => {
    const client = gw.client('sk-tera-hook-key-1');
    const { data, response } = await client.chat.completions
      .create({ model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data.choices[0]!.message.content!.length).toBeGreaterThan(0);
    await client.chat.completions.create({ model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'again' }] });
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(2);
    const first = logger.lines.find((l) => l.level === 'error' && l.fields.requestId === response.headers.get('x-tera-request-id'));
    expect(first).toMatchObject({ level: 'error', message: 'telemetry: onUsage threw' });
    expect(first?.fields.err).toBeInstanceOf(Error);
  });
});
