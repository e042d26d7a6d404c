import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTEXT_LENGTH, GPT_OSS_20B, issueToError, loadTokenizer, readBody, type ChatCompletionRequest } from '@tera-gw/core';
import { lenientChatCompletionRequestSchema } from '@tera-gw/core/internal';
import { KvCache } from './kv-cache.js';
import { SimMetrics } from './metrics.js';
import { applyHarmonyLeaks, brokenOutput, countPrompt, planResponse, type Plan, type TokenPiece } from './plan.js';
import { randomHex } from './prng.js';
import { FAULTS, type Fault, type RuntimeConfig, type SimulatorOptions, type ToolCallQuirk } from './options.js';

/** One request's generation, decided up front: what both answer paths need. */
interface Generation {
  res: ServerResponse;
  body: ChatCompletionRequest;
  plan: Plan;
  id: string;
  quirks: Set<ToolCallQuirk>;
  fault: Fault | undefined;
  signal: AbortSignal;
  /** Tokens emitted so far (for the abort counters). */
  onTokens: (n: number) => void;
  started: number;
  prefillMs: number;
}

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

interface State {
  failRate: number;
  faultRates: Partial<Record<Fault, number>>;
  faultTimes: number;
  healthy: boolean;
  cold: boolean;
  warming: Promise<void> | undefined;
  ttftMs: number;
  itlMs: number;
}

/** Messages of openai-harmony's parser as vLLM relays them (vllm#22515, #22519, #23567; openai/harmony#38). */
const HARMONY_ERRORS = [
  'openai_harmony.HarmonyError: Unexpected token 200002 while expecting start token 200006',
  'openai_harmony.HarmonyError: unexpected tokens remaining in message header: Some("to=functions.get_weather<|channel|>commentary json")',
  'openai_harmony.HarmonyError: Unknown role: assistantanalysis',
  'openai_harmony.HarmonyError: channel marker present but no channel value found in header',
];

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export async function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  await loadTokenizer();
  const model = options.model ?? GPT_OSS_20B;
  const maxModelLen = options.maxModelLen ?? CONTEXT_LENGTH;
  const reasoningField = options.reasoningField ?? 'reasoning';
  const flatErrors = options.errorFormat === 'flat';
  const version = options.version ?? (reasoningField === 'reasoning_content' ? '0.10.2' : '0.17.1');
  const defaultQuirks = new Set<ToolCallQuirk>(options.toolCallQuirks ?? []);
  const metrics = new SimMetrics(model);
  const kvCacheTokens = options.kvCacheTokens ?? 262_144;
  const kvCache = new KvCache(kvCacheTokens);
  /** Tokens of the requests in the running batch: what vLLM's KV usage gauge reports. */
  let runningTokens = 0;
  const maxNumSeqs = options.maxNumSeqs ?? 256;
  const prefillUsPerToken = options.prefillUsPerToken ?? 0;
  /** Requests waiting for a place in the running batch, first come first served. */
  const waiters: Array<() => void> = [];
  /**
   * Takes a place in the running batch (vLLM's --max-num-seqs) or waits in order for one. A place
   * that frees is handed to the next waiter directly, so no newcomer slips in between; a request
   * cancelled while waiting leaves the queue and never runs. False when it was cancelled.
   */
  const admit = (signal: AbortSignal): Promise<boolean> => {
    if (metrics.running < maxNumSeqs && !waiters.length) {
      metrics.running++;
      return Promise.resolve(true);
    }
    metrics.waiting++;
    return new Promise<boolean>((resolve) => {
      const wake = () => {
        signal.removeEventListener('abort', cancel);
        resolve(true);
      };
      const cancel = () => {
        const i = waiters.indexOf(wake);
        if (i < 0) return;
        waiters.splice(i, 1);
        metrics.waiting--;
        resolve(false);
      };
      waiters.push(wake);
      signal.addEventListener('abort', cancel, { once: true });
    });
  };
  const leave = () => {
    const next = waiters.shift();
    if (!next) {
      metrics.running--;
      return;
    }
    // The place goes to the next waiter as it is: running stays, waiting drops, in one step as vLLM's scheduler does.
    metrics.waiting--;
    next();
  };
  const faultsSeen = new Map<string, number>();
  const state: State = {
    failRate: options.failRate ?? 0,
    faultRates: { ...options.faultRates },
    faultTimes: options.faultTimes ?? Infinity,
    healthy: true,
    cold: (options.coldStartMs ?? 0) > 0,
    warming: undefined,
    ttftMs: options.ttftMs ?? 0,
    itlMs: options.itlMs ?? 0,
  };
  const created = Math.floor(Date.now() / 1000);
  const modelsBody = JSON.stringify({
    object: 'list',
    data: [
      { id: model, object: 'model', created, owned_by: 'vllm', root: model, parent: null, max_model_len: maxModelLen, permission: [] },
    ],
  });

  function sendJSON(res: ServerResponse, status: number, body: string): void {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  function sendVllmError(res: ServerResponse, status: number, type: string, message: string, param: string | null = null): void {
    const fields = { message, type, param, code: status };
    sendJSON(res, status, JSON.stringify(flatErrors ? { object: 'error', ...fields } : { error: fields }));
  }

  function configure(config: RuntimeConfig): void {
    if (config.failRate !== undefined) state.failRate = config.failRate;
    if (config.faultRates !== undefined) state.faultRates = { ...config.faultRates };
    if (config.faultTimes !== undefined) state.faultTimes = config.faultTimes ?? Infinity;
    if (config.healthy !== undefined) state.healthy = config.healthy;
    if (config.cold) state.cold = (options.coldStartMs ?? 0) > 0;
    if (config.ttftMs !== undefined) state.ttftMs = config.ttftMs;
    if (config.itlMs !== undefined) state.itlMs = config.itlMs;
  }

  async function warmUp(signal: AbortSignal): Promise<void> {
    if (!state.cold) return;
    state.warming ??= new Promise<void>((resolve) =>
      setTimeout(() => {
        state.cold = false;
        state.warming = undefined;
        resolve();
      }, options.coldStartMs ?? 0),
    );
    const warming = state.warming;
    metrics.waiting++;
    await Promise.race([warming, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    metrics.waiting--;
  }

  async function chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw: Buffer;
    try {
      raw = await readBody(req, { maxBytes: 64 * 1024 * 1024 });
    } catch {
      return sendVllmError(res, 400, 'BadRequestError', 'Could not read the request body.');
    }
    const headerFault = req.headers['x-sim-fault'];
    let fault = typeof headerFault === 'string' ? (headerFault as Fault) : undefined;
    if (fault !== undefined && !FAULTS.includes(fault)) {
      return sendVllmError(res, 400, 'BadRequestError', `Unknown x-sim-fault '${fault}'; one of ${FAULTS.join(', ')}.`);
    }
    const requestId = req.headers['x-request-id'];
    if (fault === undefined && state.failRate > 0 && Math.random() < state.failRate) fault = '500';
    if (fault === undefined)
      for (const [name, rate] of Object.entries(state.faultRates) as Array<[Fault, number]>)
        if (rate > 0 && Math.random() < rate) {
          fault = name;
          break;
        }
    // `x-sim-fault-times: N` (or `--fault-times N`): only the first N attempts of one gateway request
    // (same x-request-id) meet a fault, as a retry after a sampling failure would see.
    const times = Number(req.headers['x-sim-fault-times'] ?? state.faultTimes);
    if (fault !== undefined && Number.isFinite(times) && typeof requestId === 'string') {
      const seen = faultsSeen.get(requestId) ?? 0;
      if (faultsSeen.size > 10_000) faultsSeen.clear();
      faultsSeen.set(requestId, seen + 1);
      if (seen >= times) fault = undefined;
    }
    if (fault === 'reset-before-headers') return void req.socket.destroy();
    if (fault === '500') {
      return sendVllmError(res, 500, 'InternalServerError', 'EngineCore encountered an issue. See stack trace (above) for the root cause.');
    }
    if (fault === '503') return sendVllmError(res, 503, 'ServiceUnavailableError', 'The server is temporarily unable to serve requests.');
    if (fault === 'harmony-500') return sendVllmError(res, 500, 'InternalServerError', HARMONY_ERRORS[0]!);
    if (fault === 'harmony-400') return sendVllmError(res, 400, 'BadRequestError', HARMONY_ERRORS[1]!);
    if (fault === 'harmony-200')
      return sendJSON(
        res,
        200,
        JSON.stringify({ error: { message: HARMONY_ERRORS[2], type: 'InternalServerError', param: null, code: 500 } }),
      );
    if (fault === 'request-500')
      return sendVllmError(
        res,
        500,
        'InternalServerError',
        'ValueError: could not render the prompt (Traceback in /opt/vllm/entrypoints/openai/serving_chat.py; peer 10.0.3.7:8000; key sk-internal-0000)',
      );

    let input: unknown;
    try {
      input = JSON.parse(raw.toString('utf8'));
    } catch {
      return sendVllmError(res, 400, 'BadRequestError', 'JSON decode error: the request body is not valid JSON.');
    }
    const parsed = lenientChatCompletionRequestSchema.safeParse(input);
    if (!parsed.success) {
      const error = issueToError(parsed.error.issues[0]!);
      return sendVllmError(res, 400, 'BadRequestError', error.message, error.param);
    }
    const body = parsed.data as ChatCompletionRequest;
    if (body.model !== model) return sendVllmError(res, 404, 'NotFoundError', `The model \`${body.model}\` does not exist.`, 'model');

    let plan = planResponse(body, maxModelLen, await countPrompt(body));
    if (fault === 'empty-completion' || fault === 'schema-break' || fault === 'invalid-json') plan = brokenOutput(plan, fault);
    const requested = body.max_completion_tokens ?? body.max_tokens ?? 0;
    if (plan.promptTokens + requested > maxModelLen || plan.promptTokens >= maxModelLen) {
      return sendVllmError(
        res,
        400,
        'BadRequestError',
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${plan.promptTokens + requested} tokens (${plan.promptTokens} in the messages, ${requested} in the completion). Please reduce the length of the messages or completion.`,
      );
    }

    const quirkHeader = req.headers['x-sim-quirk'];
    const quirks =
      typeof quirkHeader === 'string' ? new Set(quirkHeader.split(',').map((q) => q.trim()) as ToolCallQuirk[]) : defaultQuirks;
    if ([...quirks].some((q) => q.startsWith('harmony-'))) plan = applyHarmonyLeaks(plan, quirks);
    const id = `chatcmpl-${typeof requestId === 'string' && requestId ? requestId : randomHex(plan.random, 32)}`;

    const aborter = new AbortController();
    let finished = false;
    let emittedTokens = 0;
    res.once('close', () => {
      if (finished) return;
      finished = true;
      aborter.abort();
      metrics.finished.abort++;
      metrics.generationTokens += emittedTokens;
    });
    const finish = (reason: 'stop' | 'length') => {
      if (finished) return;
      finished = true;
      metrics.finished[reason]++;
      metrics.generationTokens += plan.completionTokens;
    };

    const started = performance.now();
    await warmUp(aborter.signal);
    if (aborter.signal.aborted || !(await admit(aborter.signal))) return;
    metrics.promptTokens += plan.promptTokens;
    const cached = kvCache.admit(body, plan.promptTokens, body.cache_salt);
    metrics.prefixQueries += plan.promptTokens;
    metrics.prefixHits += cached;
    // vLLM's KV usage counts the blocks running requests hold; cached blocks no request holds are free (evictable).
    const heldTokens = plan.promptTokens + plan.completionTokens;
    runningTokens += heldTokens;
    metrics.kvCacheUsage = Math.min(1, runningTokens / kvCacheTokens);
    if (options.enablePromptTokensDetails) plan.cachedTokens = cached;
    // Prefill runs over the prompt tokens the prefix cache does not hold.
    const prefillMs = ((plan.promptTokens - cached) * prefillUsPerToken) / 1000;
    const generation: Generation = {
      res,
      body,
      plan,
      id,
      quirks,
      fault,
      signal: aborter.signal,
      onTokens: (n) => (emittedTokens += n),
      started,
      prefillMs,
    };
    try {
      const done = body.stream ? await stream(generation) : await respond(generation);
      if (done) finish(plan.finishReason === 'length' ? 'length' : 'stop');
    } finally {
      runningTokens -= heldTokens;
      metrics.kvCacheUsage = Math.min(1, runningTokens / kvCacheTokens);
      leave();
    }
  }

  /** A non-streamed answer after the whole generation's time; faults cut or stall it. False when it did not finish. */
  async function respond({ res, body, plan, id, fault, signal, started, prefillMs }: Generation): Promise<boolean> {
    if (fault === 'harmony-sse-before-text' || fault === 'harmony-sse-after-text') {
      sendVllmError(res, 500, 'InternalServerError', HARMONY_ERRORS[3]!);
      return false;
    }
    await sleep(prefillMs + state.ttftMs + state.itlMs * Math.max(0, plan.completionTokens - 1), signal);
    if (signal.aborted) return false;
    metrics.observeTTFT((performance.now() - started) / 1000);
    const payload = JSON.stringify(completion(body, plan, id));
    if (fault === 'drop-mid-stream' || fault === 'malformed-sse') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
      res.write(payload.slice(0, Math.floor(payload.length / 2)));
      if (fault === 'drop-mid-stream') res.destroy();
      else res.end();
      return false;
    }
    if (fault === 'stall') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return false;
    }
    sendJSON(res, 200, payload);
    return true;
  }

  function reasoningDelta(text: string): Record<string, string> {
    if (reasoningField === 'both') return { reasoning: text, reasoning_content: text };
    return { [reasoningField]: text };
  }

  function logprobsOf(piece: TokenPiece, top: number) {
    const bytes = [...Buffer.from(piece.text, 'utf8')];
    const alternatives = [{ token: piece.text, logprob: piece.logprob, bytes }];
    for (let i = 1; i < top; i++) {
      const token = `${piece.text}${i}`;
      alternatives.push({ token, logprob: piece.logprob - i, bytes: [...Buffer.from(token, 'utf8')] });
    }
    return { token: piece.text, logprob: piece.logprob, bytes, top_logprobs: alternatives };
  }

  function completion(body: ChatCompletionRequest, plan: Plan, id: string) {
    const reasoning = plan.reasoning.map((p) => p.text).join('');
    const content = plan.content.map((p) => p.text).join('');
    const toolCalls = plan.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
    const message: Record<string, unknown> = {
      role: 'assistant',
      content: plan.toolCalls.length ? null : content,
      refusal: null,
      annotations: null,
      audio: null,
      function_call: null,
      tool_calls: toolCalls,
      ...reasoningDelta(reasoning),
    };
    const top = body.top_logprobs ?? 0;
    return {
      id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [
        {
          index: 0,
          message,
          logprobs: body.logprobs ? { content: plan.content.map((p) => logprobsOf(p, top)) } : null,
          finish_reason: plan.finishReason,
          stop_reason: plan.stopReason,
        },
      ],
      service_tier: null,
      system_fingerprint: null,
      usage: usageOf(plan, plan.completionTokens),
      prompt_logprobs: null,
      kv_transfer_params: null,
    };
  }

  function usageOf(plan: Plan, completionTokens: number) {
    return {
      prompt_tokens: plan.promptTokens,
      total_tokens: plan.promptTokens + completionTokens,
      completion_tokens: completionTokens,
      prompt_tokens_details: plan.cachedTokens === undefined ? null : { cached_tokens: plan.cachedTokens },
    };
  }

  /** The SSE events of a streamed response, each with the tokens it carries (for pacing and usage). */
  function streamEvents(body: ChatCompletionRequest, plan: Plan, id: string, quirks: Set<ToolCallQuirk>): Array<[string, number]> {
    const head = `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(model)},"choices":[`;
    const continuous = body.stream_options?.continuous_usage_stats === true;
    let generated = 0;
    const events: Array<[string, number]> = [];
    const push = (choice: Record<string, unknown>, tokens: number) => {
      generated += tokens;
      const usage = continuous ? `,"usage":${JSON.stringify(usageOf(plan, generated))}` : '';
      events.push([`data: ${head}${JSON.stringify(choice)}]${usage}}\n\n`, tokens]);
    };
    const top = body.top_logprobs ?? 0;
    push({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }, 0);
    for (const piece of plan.reasoning) push({ index: 0, delta: reasoningDelta(piece.text), logprobs: null, finish_reason: null }, 1);
    for (const piece of plan.content) {
      push(
        {
          index: 0,
          delta: { content: piece.text },
          logprobs: body.logprobs ? { content: [logprobsOf(piece, top)] } : null,
          finish_reason: null,
        },
        1,
      );
    }
    plan.toolCalls.forEach((call, index) => {
      const single = quirks.has('single-delta');
      const header = { id: call.id, type: 'function', index };
      push(
        {
          index: 0,
          delta: { tool_calls: [{ ...header, function: { name: call.name, arguments: single ? call.arguments : '' } }] },
          logprobs: null,
          finish_reason: null,
        },
        1,
      );
      if (single) return;
      const fragments = call.arguments.match(/.{1,7}/gs) ?? [];
      for (const fragment of fragments) {
        const delta = quirks.has('repeat-name')
          ? { ...header, function: { name: call.name, arguments: fragment } }
          : { index, function: { arguments: fragment } };
        push({ index: 0, delta: { tool_calls: [delta] }, logprobs: null, finish_reason: null }, 1);
      }
    });
    const finishReason = plan.finishReason === 'tool_calls' && quirks.has('stop-finish') ? 'stop' : plan.finishReason;
    push({ index: 0, delta: {}, logprobs: null, finish_reason: finishReason, stop_reason: plan.stopReason }, 0);
    if (body.stream_options?.include_usage) {
      events.push([`data: ${head}],"usage":${JSON.stringify(usageOf(plan, plan.completionTokens))}}\n\n`, 0]);
    }
    events.push(['data: [DONE]\n\n', 0]);
    return events;
  }

  /** The streamed answer, paced; faults cut, stall or corrupt it. False when it did not finish. */
  async function stream({ res, body, plan, id, quirks, fault, signal, onTokens, started, prefillMs }: Generation): Promise<boolean> {
    const events = streamEvents(body, plan, id, quirks);
    await sleep(prefillMs + state.ttftMs, signal);
    if (signal.aborted) return true;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    metrics.observeTTFT((performance.now() - started) / 1000);
    const cutAt =
      fault === 'drop-mid-stream' || fault === 'harmony-sse-after-text'
        ? 3
        : fault === 'stall' || fault === 'malformed-sse'
          ? 2
          : fault === 'harmony-sse-before-text'
            ? 1
            : Infinity;
    if (state.itlMs <= 0 && cutAt === Infinity) {
      let all = '';
      for (const [text, tokens] of events) {
        all += text;
        onTokens(tokens);
      }
      res.end(all);
      return true;
    }
    for (let i = 0; i < events.length; i++) {
      if (signal.aborted) return true;
      if (i === cutAt) {
        // Let the chunks already written reach the client before the connection drops, as a crashed engine would.
        if (fault === 'drop-mid-stream') {
          setTimeout(() => res.destroy(), 20);
          return true;
        }
        if (fault === 'stall')
          return new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(true), { once: true }));
        if (fault === 'harmony-sse-before-text' || fault === 'harmony-sse-after-text') {
          // vLLM reports an exception inside a stream as one error event, then [DONE].
          const error = { error: { message: HARMONY_ERRORS[3], type: 'InternalServerError', param: null, code: 500 } };
          res.end(`data: ${JSON.stringify(error)}\n\ndata: [DONE]\n\n`);
          return true;
        }
        res.end('data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"oo\n\ndata: [DONE]\n\n');
        return true;
      }
      const [text, tokens] = events[i]!;
      res.write(text);
      onTokens(tokens);
      if (tokens > 0 && i > 1) await sleep(state.itlMs, signal);
    }
    res.end();
    return true;
  }

  /** vLLM's `/tokenize` (`{prompt}` or `{messages}` -> `{count, max_model_len, tokens, token_strs}`) and `/detokenize` (`{tokens}` -> `{prompt}`). */
  async function tokenization(req: IncomingMessage, res: ServerResponse, encodeIt: boolean): Promise<void> {
    let body: { model?: unknown; prompt?: unknown; messages?: unknown; tokens?: unknown };
    try {
      body = JSON.parse((await readBody(req)).toString('utf8')) as typeof body;
    } catch {
      return sendVllmError(res, 400, 'BadRequestError', 'The request body is not valid JSON.');
    }
    if (body.model !== undefined && body.model !== model)
      return sendVllmError(res, 404, 'NotFoundError', `The model \`${JSON.stringify(body.model)}\` does not exist.`, 'model');
    const tokenizer = await import('gpt-tokenizer/encoding/o200k_harmony');
    if (encodeIt) {
      let text: string;
      if (typeof body.prompt === 'string') text = body.prompt;
      else if (Array.isArray(body.messages))
        text = (body.messages as Array<{ content?: unknown }>).map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
      else return sendVllmError(res, 400, 'BadRequestError', 'Either `prompt` or `messages` is required.', 'prompt');
      const tokens = tokenizer.encode(text, { disallowedSpecial: new Set() });
      return sendJSON(res, 200, JSON.stringify({ count: tokens.length, max_model_len: maxModelLen, tokens, token_strs: null }));
    }
    if (!Array.isArray(body.tokens) || !body.tokens.every((t) => Number.isInteger(t) && (t as number) >= 0))
      return sendVllmError(res, 400, 'BadRequestError', '`tokens` must be a list of token ids.', 'tokens');
    sendJSON(res, 200, JSON.stringify({ prompt: tokenizer.decode(body.tokens as number[]) }));
  }

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?', 1)[0];
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      chat(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendVllmError(res, 500, 'InternalServerError', String(err));
        else res.destroy();
      });
      return;
    }
    if (req.method === 'GET' && path === '/health') {
      res.writeHead(state.healthy ? 200 : 503, { 'content-length': '0' });
      return void res.end();
    }
    if (req.method === 'GET' && path === '/v1/models') return sendJSON(res, 200, modelsBody);
    if (req.method === 'GET' && path === '/version') return sendJSON(res, 200, JSON.stringify({ version }));
    if (req.method === 'GET' && path === '/metrics') {
      const text = metrics.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      return void res.end(text);
    }
    if (req.method === 'POST' && (path === '/tokenize' || path === '/detokenize')) {
      tokenization(req, res, path === '/tokenize').catch((err: unknown) => sendVllmError(res, 500, 'InternalServerError', String(err)));
      return;
    }
    if (req.method === 'POST' && path === '/sim/config') {
      readBody(req)
        .then((raw) => {
          configure(JSON.parse(raw.toString('utf8') || '{}') as RuntimeConfig);
          sendJSON(res, 200, JSON.stringify({ ok: true }));
        })
        .catch(() => sendJSON(res, 400, JSON.stringify({ detail: 'invalid config' })));
      return;
    }
    sendJSON(res, 404, JSON.stringify({ detail: 'Not Found' }));
  });
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
    metrics,
    configure,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
