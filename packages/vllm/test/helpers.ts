import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import OpenAI from 'openai';
import { errorHandler, requestId, validate, type ValidateOptions } from '@tera-gw/core';
import { vllm, type VllmAdapter, type VllmOptions } from '../src/index.js';

const simCli = fileURLToPath(new URL('../../vllm-sim/dist/cli.js', import.meta.url));

export interface SimProcess {
  url: string;
  port: number;
  child: ChildProcess;
  metric(name: string): Promise<number>;
  configure(config: Record<string, unknown>): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A real simulator process on loopback. */
export async function spawnSim(args: string[] = [], port = 0): Promise<SimProcess> {
  const child = spawn(process.execPath, [simCli, '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`vllm-sim exited with ${code}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    child,
    async metric(name) {
      const text = await (await fetch(`${url}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').at(-1));
      return sum;
    },
    async configure(config) {
      await fetch(`${url}/sim/config`, { method: 'POST', body: JSON.stringify(config) });
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
  };
}

export interface TestGateway {
  url: string;
  client: OpenAI;
  upstream: VllmAdapter;
  close(): Promise<void>;
}

/** Core's stages and the adapter in an Express app on a real loopback port. */
export async function startGateway(options: VllmOptions, validateOptions: ValidateOptions = {}): Promise<TestGateway> {
  const upstream = vllm(options);
  const app = express();
  app.use('/v1', requestId());
  app.post('/v1/chat/completions', validate(validateOptions), upstream);
  app.use(errorHandler());
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-test', maxRetries: 0 }),
    upstream,
    close: async () => {
      upstream.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export const model = 'openai/gpt-oss-20b';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Reads an SSE response body into its data payloads. */
export async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => e.replace(/^data: /, ''));
}
