import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  DEFAULT_MAX_BODY_BYTES,
  GPT_OSS_20B,
  TeraError,
  context,
  countPromptTokens,
  invalidRequest,
  keyIdOf,
  modelNotFound,
  parseOptions,
  readJSONBody,
  recordEvent,
  sendJSON,
  validateChatRequest,
  type ChatCompletionRequest,
  type Middleware,
  type OutputFormat,
  type RequestContext,
} from '@tera-gw/core';
import { completionToResponse, ResponsesStreamEncoder, type ResponseSettings } from './output.js';
import {
  chatSettings,
  itemsToMessages,
  normalizeItem,
  responseBase,
  parseResponsesRequest,
  responsesRequestSchema,
  toResponsesParam,
  translateToolChoice,
  translateTools,
  type ResponsesRequest,
} from './request.js';
import { createSealer, type Sealer } from './seal.js';
import { MemoryResponseStore, type InputPageQuery, type ResponseStore } from './store.js';
import { responsesOptionsSchema, type ResponsesOptions } from './options.js';
import type { ResponseObject, StoredInputItem } from './types.js';

export interface ResponsesStage {
  /**
   * `POST /responses`: reads and checks the request, translates it onto the context as a chat
   * request and sets the Responses output format. Goes where `validate()` goes in the chat
   * pipeline; every other stage runs as for chat.
   */
  readonly create: Middleware;
  /**
   * `POST /responses/input_tokens`: `read` checks the request and translates it as `create` does
   * (the context's body is the chat request), then the gateway's guards run (scope, limiter),
   * then `count` answers.
   */
  readonly inputTokens: { readonly read: Middleware; readonly count: Middleware };
  /**
   * `GET|DELETE /responses/{id}`, `GET /responses/{id}/input_items`, `POST /responses/{id}/cancel`,
   * after auth and the limiter; other paths and methods go to `next()`. A stored response is
   * served as the JSON text it was stored as, never parsed again.
   */
  readonly stored: Middleware;
  /**
   * The translation alone, for in-house gateways that make their own upstream call: a parsed
   * Responses body -> the chat request to send, with `ctx.output` set so that core's
   * `transformSSE` (or the caller) writes Responses events and objects. `ctx.key` scopes storage.
   */
  readonly translate: (body: unknown, ctx: RequestContext, bodyBytes?: number) => Promise<ChatCompletionRequest>;
  readonly store: ResponseStore | undefined;
}

interface Prepared {
  chat: Record<string, unknown>;
  settings: ResponseSettings;
  /** The conversation the model sees, as stored items: the previous chain's, then this request's. */
  input: StoredInputItem[];
  /** Bytes the stored items (`previous_response_id`, each `item_reference`) add to the request body: an upper bound on their tokens. */
  storedBytes: number;
  droppedTools: string[];
}

const notFound = (id: string) =>
  new TeraError(404, 'invalid_request_error', `No response with id '${id}' was found.`, {
    code: 'response_not_found',
    param: 'response_id',
  });

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function responses(input: ResponsesOptions = {}): ResponsesStage {
  const options = parseOptions(responsesOptionsSchema, input, 'responses()');
  const store = options.store === false ? undefined : (options.store ?? new MemoryResponseStore());
  const sealer: Sealer = createSealer(options.secrets?.length ? options.secrets : [randomBytes(32).toString('base64')]);
  const hostedTools = options.hostedTools;
  const served = options.validation?.model ?? GPT_OSS_20B;

  const maxRequestBytes = options.validation?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  /**
   * Stored items make a small request large: the expanded request is what the replica reads and
   * what limits and budgets must hold, so it may be no larger than a request body.
   */
  const expanded = (bodyBytes: number, storedBytes: number, param: string) => {
    if (bodyBytes + storedBytes <= maxRequestBytes) return;
    throw invalidRequest(
      `With its stored items (\`previous_response_id\`, \`item_reference\`), this request's input is ${bodyBytes + storedBytes} bytes, more than the ${maxRequestBytes} bytes a request may have. Send fewer or smaller items.`,
      param,
      'input_too_large',
    );
  };

  async function resolveReference(id: string, keyId: string, where: string): Promise<{ item: StoredInputItem; bytes: number }> {
    const found = store ? await store.item(keyId, id) : undefined;
    const item = found?.items[0];
    if (!found || !item)
      throw invalidRequest(
        store ? `No stored item with id '${id}' was found.` : 'Item references need stored responses, which this gateway does not keep.',
        `${where}.id`,
        'item_not_found',
      );
    return { item, bytes: found.bytes };
  }

  /** The stored conversation `previous_response_id` continues, and its bytes. */
  async function history(body: ResponsesRequest, keyId: string, bodyBytes: number): Promise<{ items: StoredInputItem[]; bytes: number }> {
    if (!body.previous_response_id) return { items: [], bytes: 0 };
    if (!store)
      throw invalidRequest(
        'This gateway keeps no responses (zero retention), so `previous_response_id` cannot be used. Send the earlier output items back in `input` instead, with `include: ["reasoning.encrypted_content"]` to carry the reasoning.',
        'previous_response_id',
        'stored_responses_disabled',
      );
    const previous = await store.conversation(keyId, body.previous_response_id);
    if (!previous)
      throw invalidRequest(
        `Previous response with id '${body.previous_response_id}' not found.`,
        'previous_response_id',
        'previous_response_not_found',
      );
    expanded(bodyBytes, previous.bytes, 'previous_response_id');
    return previous;
  }

  /** This request's own items, checked, sealed reasoning opened and item references resolved; `storedBytes` counts on from the history's. */
  async function ownItems(body: ResponsesRequest, keyId: string, bodyBytes: number, storedBytes: number) {
    const raw = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : (body.input ?? []);
    const open = (sealed: string) => sealer.open(sealed, keyId);
    const items: StoredInputItem[] = [];
    let bytes = storedBytes;
    for (let i = 0; i < raw.length; i++) {
      const where = typeof body.input === 'string' ? 'input' : `input[${i}]`;
      const item = normalizeItem(raw[i], where, open);
      if (item.type !== 'item_reference') {
        items.push(item);
        continue;
      }
      const referenced = await resolveReference(item.id, keyId, where);
      bytes += referenced.bytes;
      expanded(bodyBytes, bytes, `${where}.id`);
      items.push(referenced.item);
    }
    return { items, storedBytes: bytes };
  }

  async function prepare(body: ResponsesRequest, keyId: string, bodyBytes: number): Promise<Prepared> {
    const previous = await history(body, keyId, bodyBytes);
    const own = await ownItems(body, keyId, bodyBytes, previous.bytes);
    const tools = translateTools(body.tools ?? [], hostedTools);
    const choice = translateToolChoice(body.tool_choice, tools);
    const chatTools = choice.restrictTo ? tools.tools.filter((t) => choice.restrictTo!.has(t.function.name)) : tools.tools;
    const input = [...previous.items, ...own.items];
    const messages: Array<Record<string, unknown>> = [];
    if (body.instructions) messages.push({ role: 'system', content: body.instructions });
    messages.push(...itemsToMessages(input, tools.names));
    if (!messages.length) throw invalidRequest('`input` must contain at least one item.', 'input');
    const chat: Record<string, unknown> = { model: body.model, messages, stream: body.stream === true, ...chatSettings(body) };
    if (chatTools.length) chat.tools = chatTools;
    if (choice.tool_choice !== undefined && (chatTools.length || choice.tool_choice === 'none' || choice.tool_choice === 'auto'))
      chat.tool_choice = choice.tool_choice;
    if (body.parallel_tool_calls != null && chatTools.length) chat.parallel_tool_calls = body.parallel_tool_calls;
    const settings: ResponseSettings = {
      base: responseBase(body, store !== undefined && body.store !== false),
      names: tools.names,
      logprobs: chat.logprobs === true,
      summary: (body.reasoning?.summary ?? body.reasoning?.generate_summary ?? null) !== null,
      ...(body.include?.includes('reasoning.encrypted_content') ? { seal: (text: string) => sealer.seal(text, keyId) } : {}),
    };
    return { chat, settings, input, storedBytes: own.storedBytes, droppedTools: tools.dropped };
  }

  /** Chat validation (context length, sampling ranges) on the translated request, its params named in Responses terms. */
  async function validateTranslated(
    prepared: Prepared,
    bytes: number,
    ctx: RequestContext,
    deferCostlyChecks = true,
  ): Promise<ChatCompletionRequest> {
    const inResponsesTerms = (err: unknown) => {
      if (!(err instanceof TeraError) || err.status !== 400) return err;
      return new TeraError(err.status, err.type, err.message, { code: err.code, param: toResponsesParam(err), headers: err.headers });
    };
    try {
      const chat = await validateChatRequest(prepared.chat, bytes + prepared.storedBytes, ctx, {
        ...options.validation,
        unknownFields: 'reject',
        deferCostlyChecks,
      });
      const checks = ctx.costlyChecks;
      if (checks)
        ctx.costlyChecks = async () => {
          try {
            await checks();
          } catch (err) {
            throw inResponsesTerms(err);
          }
        };
      return chat;
    } catch (err) {
      throw inResponsesTerms(err);
    }
  }

  function outputFormat(prepared: Prepared, keyId: string, ctx: RequestContext): OutputFormat {
    const save = async (response: ResponseObject) => {
      if (!response.store || !store) return;
      try {
        await store.put(keyId, { response, input: prepared.input });
      } catch (err) {
        // The caller still gets the answer; only a later `previous_response_id` on it will fail.
        recordEvent(ctx, 'tera.responses.store_failed', { 'error.type': err instanceof Error ? err.message.slice(0, 200) : 'unknown' });
      }
    };
    let encoder: ResponsesStreamEncoder | undefined;
    const stream = () => (encoder ??= new ResponsesStreamEncoder(prepared.settings));
    return {
      async completion(completion) {
        const response = await completionToResponse(completion, prepared.settings);
        await save(response);
        return response;
      },
      chunk: (chunk) => stream().chunk(chunk),
      async end(endCtx) {
        const { text, response } = await stream().end(endCtx.usage);
        await save(response);
        return text;
      },
      error: (body) => stream().error(body),
    };
  }

  async function translate(value: unknown, ctx: RequestContext, bytes = 0): Promise<ChatCompletionRequest> {
    const body = parseResponsesRequest(value);
    if (body.model !== served) ctx.requestedModel = body.model;
    if (body.model !== served && options.validation?.aliases?.[body.model] !== served) throw modelNotFound(body.model);
    const keyId = keyIdOf(ctx);
    const prepared = await prepare(body, keyId, bytes);
    for (const tool of prepared.droppedTools) recordEvent(ctx, 'tera.responses.hosted_tool_dropped', { 'tera.tool.type': tool });
    const chat = await validateTranslated(prepared, bytes, ctx);
    ctx.output = outputFormat(prepared, keyId, ctx);
    return chat;
  }

  const create: Middleware = function responsesCreate(req, res, next) {
    const ctx = context(req, res);
    readJSONBody(req, options.validation?.maxBodyBytes)
      .then(async ({ value, bytes }) => {
        ctx.body = await translate(value, ctx, bytes);
        next();
      })
      .catch(next);
  };

  /** What `input_tokens` counts, left on the context by its read step for the count step. */
  const toCount = new WeakMap<RequestContext, ChatCompletionRequest>();

  const inputTokensRead: Middleware = function responsesInputTokensRead(req, res, next) {
    const ctx = context(req, res);
    readJSONBody(req, options.validation?.maxBodyBytes)
      .then(async ({ value, bytes }) => {
        // The model may be left out here, unlike in `create`.
        const withModel = typeof value === 'object' && value !== null && !Array.isArray(value) ? { model: served, ...value } : value;
        const body = parseResponsesRequest(withModel);
        if (body.model !== served) ctx.requestedModel = body.model;
        if (body.model !== served && options.validation?.aliases?.[body.model] !== served) throw modelNotFound(body.model);
        const prepared = await prepare(body, keyIdOf(ctx), bytes);
        const chat = await validateTranslated(prepared, bytes, ctx, false);
        toCount.set(ctx, chat);
        // Scope reads the model here; nothing is sent upstream.
        ctx.body = chat;
        next();
      })
      .catch(next);
  };

  const inputTokensCount: Middleware = function responsesInputTokensCount(req, res, next) {
    const ctx = context(req, res);
    const chat = toCount.get(ctx);
    if (!chat) return next(new Error('input_tokens: the read step did not run'));
    (ctx.promptTokens !== undefined ? Promise.resolve(ctx.promptTokens) : countPromptTokens(chat)).then(
      (tokens) => sendJSON(res, 200, { object: 'response.input_tokens', input_tokens: tokens }),
      next,
    );
  };

  async function serveStored(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<boolean> {
    const path = pathOf(req);
    const method = req.method ?? 'GET';
    const match = /^\/responses\/([^/]+)(\/input_items|\/cancel)?\/?$/.exec(path);
    if (!match || match[1] === 'input_tokens') return false;
    let id: string;
    try {
      id = decodeURIComponent(match[1]!);
    } catch {
      throw notFound(match[1]!);
    }
    const keyId = keyIdOf(ctx);
    const sub = match[2];
    if (sub === '/cancel') {
      if (method !== 'POST') return false;
      if ((await store?.responseText(keyId, id)) === undefined) throw notFound(id);
      throw invalidRequest('Only background responses can be cancelled, and this gateway runs none.', null, 'not_cancellable');
    }
    if (sub === '/input_items') {
      if (method !== 'GET') return false;
      const page = store ? await store.inputPage(keyId, id, pageQuery(new URL(req.url ?? '/', 'http://x').searchParams)) : undefined;
      if (page === undefined) throw notFound(id);
      if (page === 'after_not_found') throw invalidRequest("No item with that id in this response's input.", 'after', 'invalid_value');
      // The stored items' own JSON, joined: nothing stored is parsed to answer.
      sendJSONText(
        res,
        `{"object":"list","data":[${page.items.join(',')}],"first_id":${JSON.stringify(page.firstId)},"last_id":${JSON.stringify(page.lastId)},"has_more":${page.hasMore}}`,
        ctx,
      );
      return true;
    }
    if (method === 'GET') {
      const text = store ? await store.responseText(keyId, id) : undefined;
      if (text === undefined) throw notFound(id);
      sendJSONText(res, text, ctx);
      return true;
    }
    if (method === 'DELETE') {
      if (!store || !(await store.delete(keyId, id))) throw notFound(id);
      sendJSON(res, 200, { id, object: 'response.deleted', deleted: true });
      return true;
    }
    return false;
  }

  const stored: Middleware = function responsesStored(req, res, next) {
    const ctx = context(req, res);
    serveStored(req, res, ctx).then((handled) => {
      if (!handled) next();
    }, next);
  };

  return { create, inputTokens: { read: inputTokensRead, count: inputTokensCount }, stored, translate, store };
}

/** OpenAI's cursor pagination: `limit` (1-100, 20), `order` (`desc` by default), `after` an item id. */
function pageQuery(query: URLSearchParams): InputPageQuery {
  const limitText = query.get('limit');
  const limit = limitText === null ? 20 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw invalidRequest("Invalid 'limit': must be an integer from 1 to 100.", 'limit', 'invalid_value');
  const order = query.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw invalidRequest("Invalid 'order': must be 'asc' or 'desc'.", 'order', 'invalid_value');
  return { limit, order, after: query.get('after') || undefined };
}

/** A JSON text answered as it is; what it weighs is charged to the key's token rate (about 4 bytes a token). */
function sendJSONText(res: ServerResponse, text: string, ctx: RequestContext): void {
  const bytes = Buffer.byteLength(text);
  ctx.consumedTokens = (ctx.consumedTokens ?? 0) + Math.ceil(bytes / 4);
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', bytes);
  res.end(text);
}

export { responsesRequestSchema };
