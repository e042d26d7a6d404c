import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, logLines, spawnGateway, spawnSim, type SimProcess } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/** `pnpm start` as an operator runs it: a keys file, replicas of their own, JSON lines on stdout. */
const model = 'openai/gpt-oss-20b';
const first = 'sk-tera-ops-first-key-0001';
const second = 'sk-tera-ops-second-key-0002';
const dir = mkdtempSync(join(tmpdir(), 'tera-ops-'));
const keysFile = join(dir, 'keys.json');
/** Written as editors and deploy tools do: a whole new file renamed over the old one. */
const writeKeys = (entries: unknown) => {
  writeFileSync(join(dir, '.keys.json.tmp'), typeof entries === 'string' ? entries : JSON.stringify(entries));
  renameSync(join(dir, '.keys.json.tmp'), keysFile);
};

type Gateway = Awaited<ReturnType<typeof spawnGateway>>;
const lines = (gw: Gateway) => logLines(gw.output());
const client = (gw: Gateway, key: string) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
const status = async (url: string) => (await fetch(url)).status;

describe('the access line, from the gateway process', () => {
  let sims: SimProcess[];
  let gw: Gateway;
  const secretPrompt = 'the-secret-prompt-words-zebra-quartz';

  beforeAll(async () => {
    sims = await Promise.all([spawnSim(['--ttft-ms', '5', '--itl-ms', '1']), spawnSim(['--ttft-ms', '5', '--itl-ms', '1'])]);
    writeKeys([{ key: first, id: 'team-a', concurrency: 8 }]);
    gw = await spawnGateway({ UPSTREAM_URLS: sims.map((s) => s.url).join(','), GATEWAY_KEYS: keysFile });
    await until(async () => (await status(`${gw.url}/health/ready`)) === 200, 20_000, 'a ready gateway');
  });
  afterAll(async () => {
    await gw?.stop();
    await Promise.all(sims.map((s) => s.kill()));
  });

  it('one line per request with what an operator needs, and never the key, the prompt or the answer', async () => {
    const { data, response } = await client(gw, first)
      .chat.completions.create({ model, messages: [{ role: 'user', content: secretPrompt }], max_tokens: 400 })
      .withResponse();
    const answerText = data.choices[0]!.message.content!;
    expect(answerText.length).toBeGreaterThan(8);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toMatch(/^req_[0-9a-f]{24}$/);
    const stream = await client(gw, first).responses.create({ model, input: secretPrompt, stream: true, max_output_tokens: 24 });
    let responsesId: string | undefined;
    for await (const event of stream)
      if (event.type === 'response.completed' || event.type === 'response.incomplete') responsesId = event.response.id;
    await client(gw, first)
      .chat.completions.create({ model: 'gpt-nonexistent', messages: [{ role: 'user', content: 'x' }] })
      .catch(() => undefined);
    await until(() => lines(gw).filter((l) => l.msg === 'request').length >= 3, 5000, 'three access lines');

    const access = lines(gw).filter((l) => l.msg === 'request');
    const chat = access.find((l) => l.requestId === requestId)!;
    expect(chat).toMatchObject({
      level: 'info',
      keyId: 'team-a',
      endpoint: 'chat',
      model,
      stream: false,
      status: 200,
      attempts: 1,
      servedBy: 'pool',
      inputTokens: data.usage!.prompt_tokens,
      outputTokens: data.usage!.completion_tokens,
      reasoningTokens: data.usage!.completion_tokens_details!.reasoning_tokens,
    });
    expect(sims.map((s) => s.url)).toContain(chat.replica);
    for (const field of ['durationMs', 'ttfbMs', 'queueMs', 'costUSD']) expect(typeof chat[field], field).toBe('number');
    expect(access.find((l) => l.endpoint === 'responses')).toMatchObject({ keyId: 'team-a', stream: true, status: 200 });
    expect(responsesId).toBeDefined();
    expect(access.find((l) => l.status === 404)).toMatchObject({
      endpoint: 'chat',
      model: 'gpt-nonexistent',
      errorType: 'model_not_found',
    });

    const everything = gw.output();
    expect(everything).not.toContain(first);
    expect(everything).not.toContain(secretPrompt);
    expect(everything).not.toContain(answerText);
  });

  it('/v1/models needs a key and lists what that key may call', async () => {
    expect((await fetch(`${gw.url}/v1/models`)).status).toBe(401);
    const models = await client(gw, first).models.list();
    expect(models.data.map((m) => m.id)).toEqual([model]);
  });
});

describe('a replica process dies', () => {
  let sims: SimProcess[];
  let gw: Gateway;

  beforeAll(async () => {
    sims = await Promise.all([spawnSim(['--ttft-ms', '5', '--itl-ms', '1']), spawnSim(['--ttft-ms', '5', '--itl-ms', '1'])]);
    writeKeys([{ key: first, id: 'team-a', concurrency: 8 }]);
    gw = await spawnGateway({ UPSTREAM_URLS: sims.map((s) => s.url).join(','), GATEWAY_KEYS: keysFile });
    await until(() => lines(gw).filter((l) => l.msg === 'replica ready').length === 2, 20_000, 'both replicas ready');
  });
  afterAll(async () => {
    await gw?.stop();
    await Promise.all(sims.map((s) => s.kill()));
  });

  const ask = () =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${first}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: `hi ${Math.random()}` }], max_tokens: 4 }),
    });

  it('with one left every request is still answered, and the loss is one line', async () => {
    const [dead, alive] = sims as [SimProcess, SimProcess];
    await dead.kill('SIGKILL');
    for (let i = 0; i < 12; i++) expect((await ask()).status).toBe(200);
    const lost = lines(gw).filter((l) => l.msg === 'replica lost');
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ level: 'warn', replica: dead.url });
    expect(String(lost[0]!.cause)).toMatch(/ECONNREFUSED|ECONNRESET|socket/);
    expect(lines(gw).filter((l) => l.msg === 'replica lost' && l.replica === alive.url)).toHaveLength(0);
  });

  it('a replica that comes back is one line, and takes requests again', async () => {
    const port = sims[0]!.port;
    sims[0] = await spawnSim(['--ttft-ms', '5', '--itl-ms', '1'], port);
    await until(() => lines(gw).some((l) => l.msg === 'replica back'), 15_000, 'the replica to come back');
    expect(lines(gw).filter((l) => l.msg === 'replica back')).toHaveLength(1);
  });

  it('with none left: 503 no_healthy_upstream with Retry-After, never 500', async () => {
    await Promise.all(sims.map((s) => s.kill('SIGKILL')));
    for (let i = 0; i < 4; i++) {
      const res = await ask();
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('no_healthy_upstream');
    }
    expect(await status(`${gw.url}/health/ready`)).toBe(503);
    expect(await status(`${gw.url}/health/live`)).toBe(200);
    // One line per replica lost, however many requests met it.
    const lost = lines(gw).filter((l) => l.msg === 'replica lost');
    expect(lost.map((l) => l.replica).sort()).toEqual(
      sims
        .map((s) => s.url)
        .sort()
        .concat(sims[0]!.url)
        .sort(),
    );
  });
});

describe('a replica that dies mid-stream, on pnpm start', () => {
  let sims: SimProcess[];
  let resuming: Gateway;
  let notResuming: Gateway;

  beforeAll(async () => {
    sims = await Promise.all([spawnSim(['--ttft-ms', '5', '--itl-ms', '1']), spawnSim(['--ttft-ms', '5', '--itl-ms', '1'])]);
    writeKeys([{ key: first, id: 'team-a', concurrency: 8, operator: true }]);
    const env = { UPSTREAM_URLS: sims.map((s) => s.url).join(','), GATEWAY_KEYS: keysFile };
    [resuming, notResuming] = await Promise.all([spawnGateway(env), spawnGateway({ ...env, RESUME: 'off' })]);
    for (const gw of [resuming, notResuming])
      await until(() => lines(gw).filter((l) => l.msg === 'replica ready').length === 2, 20_000, 'both replicas ready');
  });
  afterAll(async () => {
    await Promise.all([resuming?.stop(), notResuming?.stop()]);
    await Promise.all(sims.map((s) => s.kill()));
  });

  /** One stream while every replica is armed to reset its next stream after 30 tokens. */
  async function cutStream(gw: Gateway): Promise<{ text: string; finish: string | null | undefined; error: unknown }> {
    await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: { tokens: 30 } })));
    const out = { text: '', finish: undefined as string | null | undefined, error: undefined as unknown };
    try {
      const stream = await client(gw, first).chat.completions.create({
        model,
        seed: 7,
        stream: true,
        max_tokens: 300,
        messages: [{ role: 'user', content: 'Tell me about the sea' }],
      });
      for await (const chunk of stream) {
        out.text += (chunk.choices[0]?.delta as { reasoning?: string } | undefined)?.reasoning ?? '';
        out.text += chunk.choices[0]?.delta.content ?? '';
        out.finish ??= chunk.choices[0]?.finish_reason;
      }
    } catch (err) {
      out.error = err;
    } finally {
      await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: null })));
    }
    return out;
  }

  it('is resumed on the other replica by default: the stream finishes, one line says so', async () => {
    const cut = await cutStream(resuming);
    expect(cut.error).toBeUndefined();
    expect(cut.finish).toBe('stop');
    const whole = await client(resuming, first).chat.completions.create({
      model,
      seed: 7,
      max_tokens: 300,
      messages: [{ role: 'user', content: 'Tell me about the sea' }],
    });
    const message = whole.choices[0]!.message as { reasoning?: string; content: string | null };
    // The same seed on any replica is the same answer: the resumed stream is it, token for token.
    expect(cut.text).toBe((message.reasoning ?? '') + (message.content ?? ''));
    await until(() => lines(resuming).some((l) => l.msg === 'stream resumed'), 5000, 'the resumed line');
    expect(lines(resuming).find((l) => l.msg === 'request' && l.stream === true)).toMatchObject({ status: 200, resumes: 1 });
    const metrics = await (await fetch(`${resuming.url}/metrics`, { headers: { authorization: `Bearer ${first}` } })).text();
    expect(metrics).toMatch(/^tera_resumes_total\{[^}]*outcome="started"[^}]*\} 1$/m);
    expect(metrics).toMatch(/^tera_resumes_total\{[^}]*outcome="completed"[^}]*\} 1$/m);
  });

  it('with RESUME=off the caller gets one error event instead', async () => {
    const cut = await cutStream(notResuming);
    expect(cut.finish).toBeFalsy();
    expect(cut.error).toBeInstanceOf(OpenAI.APIError);
    expect(lines(notResuming).some((l) => String(l.msg).startsWith('stream res'))).toBe(false);
  });
});

describe('the keys file changes under a running gateway', () => {
  let sim: SimProcess;
  let gw: Gateway;

  beforeAll(async () => {
    // Paced so that a stream of 120 tokens lasts over a second: it is in flight while the file changes.
    sim = await spawnSim(['--ttft-ms', '5', '--itl-ms', '12']);
    writeKeys([{ key: first, id: 'first', concurrency: 8 }]);
    gw = await spawnGateway({ UPSTREAM_URLS: sim.url, GATEWAY_KEYS: keysFile });
    await until(async () => (await status(`${gw.url}/health/ready`)) === 200, 20_000, 'a ready gateway');
  });
  afterAll(async () => {
    await gw?.stop();
    await sim?.kill();
  });

  it('a new key works, a removed one gets 401, and a stream in flight finishes', async () => {
    const stream = await client(gw, first).chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'tell me a long story' }],
      max_tokens: 120,
      stream: true,
    });
    let finish: string | null | undefined;
    let text = '';
    const reading = (async () => {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        finish ??= chunk.choices[0]?.finish_reason;
      }
    })();
    writeKeys([{ key: second, id: 'second', concurrency: 8 }]);
    await until(() => lines(gw).some((l) => l.msg === 'keys reloaded'), 5000, 'the reload');
    const answer = await client(gw, second).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(answer.choices).toHaveLength(1);
    const refused = await client(gw, first)
      .chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 })
      .catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    await reading;
    expect(['stop', 'length']).toContain(finish);
    expect(text.length).toBeGreaterThan(0);
  });

  it('a broken file is refused with an error line naming the field; the keys in force stay', async () => {
    writeKeys([
      { key: second, id: 'second' },
      { key: 'sk-tera-broken', budget: { usd: 1, period: 'fortnight' } },
    ]);
    await until(() => lines(gw).some((l) => l.msg === 'keys refused'), 5000, 'the refusal');
    const refusal = lines(gw).find((l) => l.msg === 'keys refused')!;
    expect(refusal.level).toBe('error');
    expect(refusal.error).toMatch(/^GATEWAY_KEYS\[1\]\.budget\.period: /);
    const answer = await client(gw, second).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(answer.choices).toHaveLength(1);
  });

  it('SIGHUP reads the file again', async () => {
    writeFileSync(keysFile, JSON.stringify([{ key: first, id: 'first-again' }]));
    const reloads = () => lines(gw).filter((l) => l.msg === 'keys reloaded').length;
    const before = reloads();
    process.kill(gw.pid, 'SIGHUP');
    await until(() => reloads() > before, 5000, 'the reload');
    const answer = await client(gw, first).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(answer.choices).toHaveLength(1);
  });
});

describe('probes through start-up, loss and shutdown', () => {
  it('live from the start; ready only with a replica; both 503 while draining; the stream in flight finishes', async () => {
    const port = await freePort();
    writeKeys([{ key: first, id: 'first' }]);
    const gw = await spawnGateway({ UPSTREAM_URLS: `http://127.0.0.1:${port}`, GATEWAY_KEYS: keysFile });
    let sim: SimProcess | undefined;
    try {
      expect(await status(`${gw.url}/health/live`)).toBe(200);
      expect(await status(`${gw.url}/health/ready`)).toBe(503);
      expect(lines(gw).some((l) => l.msg === 'ready')).toBe(false);
      sim = await spawnSim(['--ttft-ms', '5', '--itl-ms', '12'], port);
      await until(async () => (await status(`${gw.url}/health/ready`)) === 200, 15_000, 'ready once the replica is');
      await until(() => lines(gw).some((l) => l.msg === 'ready'), 5000, 'the ready line');
      expect(lines(gw).filter((l) => l.msg === 'ready')).toHaveLength(1);

      await sim.kill('SIGKILL');
      await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${first}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(await status(`${gw.url}/health/ready`)).toBe(503);
      expect(await status(`${gw.url}/health/live`)).toBe(200);

      sim = await spawnSim(['--ttft-ms', '5', '--itl-ms', '12'], port);
      await until(async () => (await status(`${gw.url}/health/ready`)) === 200, 15_000, 'ready again');
      const stream = await client(gw, first).chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'a long story' }],
        max_tokens: 120,
        stream: true,
      });
      let finish: string | null | undefined;
      const reading = (async () => {
        for await (const chunk of stream) finish ??= chunk.choices[0]?.finish_reason;
      })();
      const stopped = gw.stop('SIGTERM');
      await until(() => lines(gw).some((l) => l.msg === 'drain started'), 5000, 'the drain');
      expect(await status(`${gw.url}/health/live`)).toBe(503);
      expect(await status(`${gw.url}/health/ready`)).toBe(503);
      await reading;
      expect(['stop', 'length']).toContain(finish);
      await stopped;
      expect(lines(gw).find((l) => l.msg === 'drain finished')).toMatchObject({ unfinished: 0 });
    } finally {
      await gw.stop('SIGKILL');
      await sim?.kill();
    }
  });
});

describe('start-up that explains itself', () => {
  const main = fileURLToPath(new URL('../../examples/express-gateway/dist/main.js', import.meta.url));
  /** Runs the example to its end: exit code and stderr. */
  async function run(env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
    const child = spawn(process.execPath, [main], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, UPSTREAM_URLS: '', GATEWAY_KEYS: '', ...env },
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    return { code, stderr, stdout };
  }

  it.each([
    [{ PORT: 'abc' }, "express-gateway: PORT must be a whole number from 0 to 65535; got 'abc'"],
    [{ UPSTREAM_URLS: 'vllm-0:8000' }, "express-gateway: UPSTREAM_URLS[0]: 'vllm-0:8000' must start with http:// or https://"],
    [{ ROUTING: 'random' }, "express-gateway: ROUTING must be one of cache-aware, least-request; got 'random'"],
  ])('%o -> one line naming the variable, exit code 1, nothing started', async (env, line) => {
    const result = await run(env);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`${line}\n`);
    expect(result.stdout).toBe('');
  });

  it('a keys-file mistake names the field, and the same key twice is refused', async () => {
    writeKeys([{ key: first }, { key: second }, { key: 'sk-tera-third', budget: { usd: 1, period: 'fortnight' } }]);
    const period = await run({ GATEWAY_KEYS: keysFile });
    expect(period.code).toBe(1);
    expect(period.stderr).toMatch(/^express-gateway: GATEWAY_KEYS\[2\]\.budget\.period: [^\n]+\n$/);
    writeKeys([
      { key: first, id: 'a' },
      { key: first, id: 'b' },
    ]);
    const twice = await run({ GATEWAY_KEYS: keysFile });
    expect(twice.stderr).toBe('express-gateway: GATEWAY_KEYS[1]: the same key as GATEWAY_KEYS[0]; each key may appear once\n');
  });

  it('a port in use says so', async () => {
    const sim = await spawnSim();
    try {
      const result = await run({ PORT: String(sim.port) });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        `express-gateway: PORT ${sim.port} is already in use on 127.0.0.1: stop what holds it, or set PORT to a free port\n`,
      );
    } finally {
      await sim.kill();
    }
  });
});
