import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLines, spawnGateway } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/** `pnpm start` as a new user runs it: no configuration, two embedded simulators. */
const model = 'openai/gpt-oss-20b';
let gw: Awaited<ReturnType<typeof spawnGateway>>;
let key: string;
let simulators: string[];

beforeAll(async () => {
  gw = await spawnGateway({ UPSTREAM_URLS: '', GATEWAY_KEYS: '' });
  // The key is printed just after the listening line, perhaps in a later chunk of output.
  await until(() => gw.output().includes('development API key'), 10_000, 'the development key');
  key = /development API key \(this run only\): (\S+)/.exec(gw.output())![1]!;
  simulators = logLines(gw.output()).find((l) => l.msg === 'no UPSTREAM_URLS: started two embedded vllm-sim replicas')!
    .replicas as string[];
});
afterAll(async () => {
  await gw.stop();
});

const answers = async (simulator: string) => {
  try {
    return (await fetch(`${simulator}/health`)).ok;
  } catch {
    return false;
  }
};

describe('pnpm start', () => {
  it('answers a chat completion through its embedded simulators', async () => {
    await until(async () => (await fetch(`${gw.url}/health`)).ok, 20_000, 'a ready replica');
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 }),
    });
    expect(res.status).toBe(200);
  });

  it.each([
    ['GET', '/', 404],
    ['POST', '/health', 405],
    ['OPTIONS', '/', 404],
    ['GET', '/health/%', 404],
    ['DELETE', '/metrics', 405],
    ['GET', '/v1/nope', 404],
  ])('%s %s -> %i in the JSON error shape, never HTML', async (method, path, status) => {
    const res = await fetch(`${gw.url}${path}`, { method });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
  });

  it('headers over the size limit -> a readable JSON 431', async () => {
    const res = await fetch(`${gw.url}/v1/models`, { headers: { 'x-oversize': 'a'.repeat(20_000) } });
    expect(res.status).toBe(431);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('headers_too_large');
  });

  it('runs its simulators in processes of their own, which end with it', async () => {
    for (const simulator of simulators) expect(await answers(simulator)).toBe(true);
    expect(new URL(simulators[0]!).port).not.toBe(new URL(gw.url).port);
    await gw.stop('SIGKILL');
    await until(async () => !(await answers(simulators[0]!)) && !(await answers(simulators[1]!)), 10_000, 'the simulators to exit');
  });
});
