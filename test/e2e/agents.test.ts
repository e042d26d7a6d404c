import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, OpenAIResponsesModel, run, setTracingDisabled, tool } from '@openai/agents';
import express from 'express';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '@tera-gw/gateway';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const key = 'sk-tera-agents-key-1';
const codexBinary = fileURLToPath(new URL('../node_modules/.bin/codex', import.meta.url));

interface Exchange {
  body: Record<string, unknown>;
  status: number;
  answer: string;
}

let sim: SimProcess;
let gateway: Gateway;
let server: Server;
let baseURL: string;
/** Every `POST /v1/responses` the gateway answered, with the bytes it sent back. */
const exchanges: Exchange[] = [];

beforeAll(async () => {
  sim = await spawnSim(['--itl-ms', '1']);
  gateway = createGateway({
    replicas: [sim.url],
    auth: { keys: [{ key, id: 'agents', models: '*', concurrency: 8, tokensPerSecond: 1_000_000 }] },
    upstream: { health: { intervalMs: 200 } },
    responses: { secrets: ['agents-suite-secret-0123456789'] },
  });
  const app = express();
  // The gateway reads a body parsed in front of it; the test keeps a copy of each request and its answer.
  app.use(express.json({ limit: '8mb' }));
  app.use('/v1/responses', (req, res, next) => {
    if (req.method !== 'POST' || req.path !== '/') return next();
    const exchange: Exchange = { body: req.body as Record<string, unknown>, status: 0, answer: '' };
    exchanges.push(exchange);
    const write = res.write.bind(res) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const end = res.end.bind(res) as (chunk?: unknown, ...rest: unknown[]) => typeof res;
    const text = (chunk: unknown) => (typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '');
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      exchange.answer += text(chunk);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      exchange.answer += text(chunk);
      exchange.status = res.statusCode;
      return end(chunk, ...rest);
    }) as typeof res.end;
    next();
  });
  app.use('/v1', gateway);
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  await gateway.ready();
  setTracingDisabled(true);
});

afterAll(async () => {
  await gateway.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await sim.kill();
});

describe('the OpenAI Agents SDK through the gateway', () => {
  it('runs an agent with a function tool to a final answer (OpenAIResponsesModel)', async () => {
    const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });
    const calls: string[] = [];
    const getWeather = tool({
      name: 'get_weather',
      description: 'Get the current weather for a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' } },
        required: ['city'],
        additionalProperties: false,
      },
      strict: true,
      execute: (input) => {
        calls.push((input as { city: string }).city);
        return 'It is 18 C and sunny.';
      },
    });
    const agent = new Agent({
      name: 'Weather agent',
      instructions: 'Answer questions about the weather with the get_weather tool.',
      model: new OpenAIResponsesModel(client, model),
      tools: [getWeather],
    });
    const before = exchanges.length;
    const result = await run(agent, 'What is the weather in Paris?');
    expect(calls).toEqual(['Paris']);
    // The simulator answers a tool result by quoting it: the tool's output reached the model.
    expect(result.finalOutput).toContain('It is 18 C and sunny.');
    const mine = exchanges.slice(before);
    expect(mine).toHaveLength(2);
    expect(mine.every((e) => e.status === 200)).toBe(true);
    const secondInput = mine[1]!.body.input as Array<{ type?: string }>;
    expect(secondInput.map((i) => i.type)).toEqual(expect.arrayContaining(['function_call', 'function_call_output']));
  });
});

function runCodex(prompt: string, home: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const args = [
    'exec',
    '--json',
    '--skip-git-repo-check',
    '--sandbox',
    'read-only',
    '-m',
    model,
    '-c',
    'model_provider=tera',
    '-c',
    'model_providers.tera.name="tera"',
    '-c',
    `model_providers.tera.base_url="${baseURL}"`,
    '-c',
    'model_providers.tera.env_key="TERA_API_KEY"',
    '-c',
    'model_providers.tera.wire_api="responses"',
    prompt,
  ];
  const child = spawn(codexBinary, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, CODEX_HOME: join(home, '.codex'), TERA_API_KEY: key },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The text of `response.output_text.delta` events in one answer. */
function streamedText(answer: string): string {
  let text = '';
  for (const line of answer.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const event = JSON.parse(line.slice(6)) as { type: string; delta?: string };
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  return text;
}

describe('the Codex CLI (codex exec) through the gateway', () => {
  let home: string;
  let work: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'tera-codex-home-'));
    work = join(home, 'work');
    await mkdir(join(home, '.codex'), { recursive: true });
    await mkdir(work);
  });
  afterAll(() => rm(home, { recursive: true, force: true }));

  it('completes a turn with exit code 0; what it prints is what the gateway streamed', async () => {
    const before = exchanges.length;
    const result = await runCodex('Say hello', home, work);
    expect(result.code, result.stderr.slice(-2000)).toBe(0);
    const mine = exchanges.slice(before);
    expect(mine.length).toBeGreaterThanOrEqual(1);
    const request = mine[0]!.body;
    // What Codex sends, as PROTOCOL.md records it: stateless, sealed reasoning asked for, its session as the cache key.
    expect(request).toMatchObject({ model, stream: true, store: false, include: ['reasoning.encrypted_content'] });
    expect(typeof request.prompt_cache_key).toBe('string');
    expect((request.tools as Array<{ type: string }>).map((t) => t.type)).toEqual(
      expect.arrayContaining(['function', 'namespace', 'web_search']),
    );
    const last = mine.at(-1)!;
    expect(last.status).toBe(200);
    expect(last.answer).toContain('event: response.completed');
    const events = result.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { type: string; item?: { type: string; text?: string } });
    const message = events.filter((e) => e.type === 'item.completed' && e.item?.type === 'agent_message').at(-1);
    expect(message?.item?.text).toBe(streamedText(last.answer));
    expect(events.some((e) => e.type === 'turn.completed')).toBe(true);
  });

  it('a tool-calling turn: the tool output and the sealed reasoning go back, and the gateway opens it', async () => {
    const before = exchanges.length;
    const result = await runCodex('Use exec_command to run a command', home, work);
    expect(result.code, result.stderr.slice(-2000)).toBe(0);
    const mine = exchanges.slice(before);
    expect(mine.length).toBeGreaterThanOrEqual(2);
    expect(mine.every((e) => e.status === 200)).toBe(true);
    expect(mine[0]!.answer).toContain('"type":"function_call"');
    const followUp = mine[1]!.body.input as Array<{ type?: string; encrypted_content?: string }>;
    const types = followUp.map((i) => i.type);
    expect(types).toEqual(expect.arrayContaining(['reasoning', 'function_call', 'function_call_output']));
    expect(followUp.find((i) => i.type === 'reasoning')?.encrypted_content).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(mine[1]!.answer).toContain('event: response.completed');
  });
});
