import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTEXT_LENGTH, GPT_OSS_20B, loadTokenizer, readBody } from '@tera-gw/core';
import { chat } from './chat.js';
import { Engine } from './engine.js';
import type { SimMetrics } from './metrics.js';
import type { RuntimeConfig, SimulatorOptions, ToolCallQuirk } from './options.js';
import { sendJSON, vllmError, type Sim } from './sim.js';
import { tokenization } from './tokenize.js';
import { completions } from './completions.js';

export interface SimulatorHandle {
  /** Base URL, e.g. `http://127.0.0.1:8001` (no `/v1`). */
  readonly url: string;
  readonly port: number;
  readonly metrics: SimMetrics;
  /** Changes faults, health and timing while running. */
  configure(config: RuntimeConfig): void;
  /** Stops listening and cuts every open connection, stalled streams included. */
  close(): Promise<void>;
}

function createSim(options: SimulatorOptions): Sim {
  const model = options.model ?? GPT_OSS_20B;
  return {
    model,
    maxModelLen: options.maxModelLen ?? CONTEXT_LENGTH,
    reasoningField: options.reasoningField ?? 'reasoning',
    defaultQuirks: new Set<ToolCallQuirk>(options.toolCallQuirks ?? []),
    options,
    engine: new Engine(options, model),
    faultsSeen: new Map(),
    json: sendJSON,
    error: vllmError(options.errorFormat === 'flat'),
  };
}

/** The routes vLLM's OpenAI server offers (and `/sim/config` for failure drills); anything else is its 404. */
function router(sim: Sim) {
  const version = sim.options.version ?? (sim.reasoningField === 'reasoning_content' ? '0.10.2' : '0.17.1');
  const created = Math.floor(Date.now() / 1000);
  const modelsBody = JSON.stringify({
    object: 'list',
    data: [
      {
        id: sim.model,
        object: 'model',
        created,
        owned_by: 'vllm',
        root: sim.model,
        parent: null,
        max_model_len: sim.maxModelLen,
        permission: [],
      },
    ],
  });
  const failed = (res: ServerResponse) => (err: unknown) => {
    if (!res.headersSent) sim.error(res, 500, 'InternalServerError', String(err));
    else res.destroy();
  };
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const route = `${req.method} ${path}`;
    switch (route) {
      case 'POST /v1/chat/completions':
        return void chat(sim, req, res).catch(failed(res));
      case 'GET /health':
        res.writeHead(sim.engine.state.healthy ? 200 : 503, { 'content-length': '0' });
        return void res.end();
      case 'GET /v1/models':
        return sim.json(res, 200, modelsBody);
      case 'GET /version':
        return sim.json(res, 200, JSON.stringify({ version }));
      case 'GET /metrics': {
        const text = sim.engine.metrics.render();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        return void res.end(text);
      }
      case 'POST /v1/completions':
        return void completions(sim, req, res).catch(failed(res));
      case 'POST /tokenize':
      case 'POST /detokenize':
        return void tokenization(sim, req, res, path === '/tokenize').catch(failed(res));
      case 'POST /sim/config':
        return void readBody(req)
          .then((raw) => {
            sim.engine.configure(JSON.parse(raw.toString('utf8') || '{}') as RuntimeConfig);
            sim.json(res, 200, JSON.stringify({ ok: true }));
          })
          .catch(() => sim.json(res, 400, JSON.stringify({ detail: 'invalid config' })));
      default:
        sim.json(res, 404, JSON.stringify({ detail: 'Not Found' }));
    }
  };
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  await loadTokenizer();
  const sim = createSim(options);
  const server: Server = createServer(router(sim));
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    metrics: sim.engine.metrics,
    configure: (config) => sim.engine.configure(config),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
