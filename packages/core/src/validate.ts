import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { context, type RequestContext } from './context.js';
import { invalidRequest, modelNotFound, TeraError } from './errors.js';
import { readBody, type Middleware } from './http.js';
import { GPT_OSS_20B } from './models.js';
import {
  CONTEXT_LENGTH,
  LOCAL_ONLY_FIELDS,
  MAX_OUTPUT_TOKENS,
  UNSUPPORTED_FIELDS,
  chatCompletionRequestSchema,
  lenientChatCompletionRequestSchema,
  type ChatCompletionRequest,
} from './schema.js';
import { compileSchema, patternBudget, SchemaTooComplex } from './json-schema.js';
import { countPromptTokensUpTo } from './tokens.js';
import { parseOptions } from './options.js';

/** `validate()`'s options. */
export const validateOptionsSchema = z.strictObject({
  /** The model id served. @defaultValue `openai/gpt-oss-20b` */
  model: z.string().min(1).optional(),
  /** Fields no API defines: `'reject'` answers 400 naming the field, as OpenAI does; `'drop'` removes them. @defaultValue `'reject'` */
  unknownFields: z.enum(['reject', 'drop']).optional(),
  /** @defaultValue 4 MiB */
  maxBodyBytes: z.int().positive().optional(),
  /** @defaultValue 131072 */
  contextLength: z.int().positive().optional(),
  /**
   * Other model names served by this model (`{ 'gpt-4o-mini': 'openai/gpt-oss-20b' }`): the
   * request goes upstream for the model, and the answer and usage name what was asked.
   */
  aliases: z.record(z.string(), z.string()).optional(),
  /**
   * Leave the checks whose cost grows with the request (schema limits, the exact prompt count)
   * to a later stage (\`ctx.costlyChecks\`), after scope and rate limits, so a caller those
   * refuse costs nothing more. \`vllm()\` runs them (and \`createGateway\` as a stage of its own);
   * an upstream of your own must call \`ctx.costlyChecks\` itself.
   * @defaultValue \`false\`
   */
  deferCostlyChecks: z.boolean().optional(),
});

export type ValidateOptions = z.input<typeof validateOptionsSchema>;

/** JSON nesting accepted in a request body: far above any real request (a tool schema is limited to 64). */
export const MAX_JSON_DEPTH = 128;

/** `messages[2].content` from zod's path `['messages', 2, 'content']`. */
export function formatParam(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || null;
}

function describe(issue: z.core.$ZodIssue, param: string | null): string {
  const where = param ? `'${param}'` : 'the request body';
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return `Missing required parameter: ${where}.`;
      return `Invalid type for ${where}: expected ${issue.expected}, but got ${issue.input === null ? 'null' : Array.isArray(issue.input) ? 'array' : typeof issue.input}.`;
    case 'too_big':
      return issue.origin === 'array'
        ? `Invalid ${where}: at most ${String(issue.maximum)} items are allowed.`
        : issue.origin === 'string'
          ? `Invalid ${where}: at most ${String(issue.maximum)} characters are allowed.`
          : `Invalid ${where}: must be ${issue.inclusive ? 'at most' : 'less than'} ${String(issue.maximum)}, got ${String(issue.input)}.`;
    case 'too_small':
      return issue.origin === 'array' || issue.origin === 'string'
        ? `Invalid ${where}: ${issue.message}`
        : `Invalid ${where}: must be ${issue.inclusive ? 'at least' : 'greater than'} ${String(issue.minimum)}, got ${String(issue.input)}.`;
    case 'invalid_value':
      return `Invalid value for ${where}: must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}.`;
    case 'invalid_union':
      if ('discriminator' in issue && issue.discriminator) {
        return `Invalid value for ${where}: '${String(issue.discriminator)}' must be one of the supported values.`;
      }
      return `Invalid value for ${where}.`;
    case 'unrecognized_keys':
      return `Unrecognized request argument supplied: ${issue.keys.join(', ')}.`;
    default:
      return param ? `Invalid value for ${where}: ${issue.message}` : issue.message;
  }
}

/**
 * A union (content: string or parts) that failed reports every branch; the branch that got
 * furthest into the value says what is really wrong (`messages[2].content[1]`, not `content`).
 */
function deepestIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || ('discriminator' in issue && issue.discriminator) || !issue.errors.length) return issue;
  let best: z.core.$ZodIssue | undefined;
  for (const branch of issue.errors) {
    const first = branch[0];
    if (!first) continue;
    if (!best || first.path.length > best.path.length || (best.code === 'invalid_type' && first.code !== 'invalid_type')) best = first;
  }
  if (!best || (best.code === 'invalid_type' && best.path.length === 0)) return issue;
  return deepestIssue({ ...best, path: [...issue.path, ...best.path] });
}

/** The first issue, as the error a client can act on (OpenAI reports one problem at a time). */
export function issueToError(rootIssue: z.core.$ZodIssue): TeraError {
  const issue = deepestIssue(rootIssue);
  let path: PropertyKey[] = [...issue.path];
  if (issue.code === 'unrecognized_keys' && issue.keys.length) path = [...path, issue.keys[0]!];
  const param = formatParam(path);
  const textOnly = issue.code === 'custom' && (issue.params as { tera?: string } | undefined)?.tera === 'text_only';
  const message = issue.code === 'custom' ? issue.message : describe(issue, param);
  return invalidRequest(
    message,
    param,
    textOnly ? 'unsupported_content' : issue.code === 'unrecognized_keys' ? 'unknown_parameter' : 'invalid_value',
  );
}

/**
 * The nesting depth of a JSON text, up to `limit + 1`, in one pass over the bytes. V8's
 * JSON.parse takes 0.6 s for 2 MB of `[`, and the recursive steps after it (stringify,
 * schema walks) overflow the stack, so a deep body is refused before it is parsed.
 */
function jsonDepthExceeds(raw: Buffer, limit: number): boolean {
  let depth = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0x22) {
      // Strings are skipped with indexOf (message text is most of a body): to the first quote not escaped.
      let end = i;
      for (;;) {
        end = raw.indexOf(0x22, end + 1);
        if (end === -1) return false;
        let backslashes = 0;
        for (let k = end - 1; raw[k] === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      i = end;
    } else if (b === 0x5b || b === 0x7b) {
      if (++depth > limit) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

/** The same bound for a body some earlier middleware already parsed, walked without recursion. */
function valueDepthExceeds(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

const tooDeep = () => invalidRequest(`The request body is nested more than ${MAX_JSON_DEPTH} levels deep.`, null, 'invalid_json');

const parseJSON = (raw: Buffer): unknown => {
  if (jsonDepthExceeds(raw, MAX_JSON_DEPTH)) throw tooDeep();
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw invalidRequest(
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
      null,
      'invalid_json',
    );
  }
};

/** The request body as JSON (or what a body parser mounted earlier left), with its size in bytes; 400 / 413 as TeraErrors. */
export async function readJSONBody(req: IncomingMessage, maxBodyBytes: number | undefined): Promise<{ value: unknown; bytes: number }> {
  // An app may have run a body parser (express.json, koa-bodyparser) before us.
  const preParsed = (req as IncomingMessage & { body?: unknown }).body;
  if (preParsed !== undefined) {
    if (Buffer.isBuffer(preParsed)) return { value: parseJSON(preParsed), bytes: preParsed.length };
    if (typeof preParsed === 'string') return { value: parseJSON(Buffer.from(preParsed)), bytes: Buffer.byteLength(preParsed) };
    if (valueDepthExceeds(preParsed, MAX_JSON_DEPTH)) throw tooDeep();
    return { value: preParsed, bytes: Buffer.byteLength(JSON.stringify(preParsed)) };
  }
  const raw = await readBody(req, maxBodyBytes === undefined ? {} : { maxBytes: maxBodyBytes });
  return { value: parseJSON(raw), bytes: raw.length };
}

function refuseUnsupported(body: Record<string, unknown>): void {
  for (const field in UNSUPPORTED_FIELDS) {
    if (!Object.hasOwn(body, field)) continue;
    const value = body[field];
    if (value === null || value === undefined) continue;
    if (field === 'logit_bias' && typeof value === 'object' && Object.keys(value).length === 0) continue;
    throw invalidRequest(UNSUPPORTED_FIELDS[field]!, field, 'unsupported_parameter');
  }
}

/** `partial`: counting stopped once the prompt was known to be too long, so the counts are lower bounds. */
export const contextLengthExceeded = (prompt: number, completion: number, limit: number, partial = false): TeraError =>
  invalidRequest(
    `This model's maximum context length is ${limit} tokens. However, you requested ${partial ? 'at least ' : ''}${prompt + completion} tokens (${partial ? 'at least ' : ''}${prompt} in the messages, ${completion} in the completion). Please reduce the length of the messages or completion.`,
    'messages',
    'context_length_exceeded',
  );

/**
 * Tool parameters and a `json_schema` response format within the bounded checker's limits;
 * 400 naming the schema otherwise. Compiling is linear in a schema's size: it yields to the
 * event loop between schemas, so 128 large ones do not hold it.
 */
async function checkSchemas(body: ChatCompletionRequest): Promise<void> {
  // One budget for the patterns of every schema of the request: many small schemas add up.
  const patterns = patternBudget();
  const check = (schema: unknown, param: string, what: string) => {
    try {
      compileSchema(schema, undefined, patterns);
    } catch (err) {
      if (!(err instanceof SchemaTooComplex)) throw err;
      const where = err.pointer ? ` (at ${err.pointer.length > 200 ? `${err.pointer.slice(0, 200)}...` : err.pointer})` : '';
      throw invalidRequest(`Invalid schema for ${what}: ${err.message}${where}.`, param, 'schema_too_complex');
    }
  };
  const tools = body.tools ?? [];
  for (let i = 0; i < tools.length; i++) {
    const tool = tools[i]!;
    if (!tool.function.parameters) continue;
    if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    check(tool.function.parameters, `tools[${i}].function.parameters`, `function '${tool.function.name}'`);
  }
  const format = body.response_format;
  if (format?.type === 'json_schema' && format.json_schema.schema)
    check(format.json_schema.schema, 'response_format.json_schema.schema', `response_format '${format.json_schema.name}'`);
}

/**
 * Validates a parsed body and returns what goes upstream. Counting tokens costs far more
 * than the rest of the gateway, so the prompt is counted only when its byte length (an
 * upper bound: every o200k token covers at least one byte) could overflow the context.
 */
export async function validateChatRequest(
  input: unknown,
  bodyBytes: number,
  ctx: RequestContext,
  options: ValidateOptions = {},
): Promise<ChatCompletionRequest> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json');
  }
  refuseUnsupported(input as Record<string, unknown>);
  const schema = options.unknownFields === 'drop' ? lenientChatCompletionRequestSchema : chatCompletionRequestSchema;
  // reportInput keeps the value on each issue, so a wrong type is told apart from a missing field.
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) throw issueToError(result.error.issues[0]!);
  const body = result.data as ChatCompletionRequest;
  const served = options.model ?? GPT_OSS_20B;
  if (body.model !== served) {
    // Set first: the 404 is logged and counted under the name asked for.
    ctx.requestedModel = body.model;
    if (!options.aliases || !Object.hasOwn(options.aliases, body.model) || options.aliases[body.model] !== served)
      throw modelNotFound(body.model);
    body.model = served;
  }

  const local: NonNullable<RequestContext['local']> = {};
  if (body.prompt_cache_key !== undefined) local.promptCacheKey = body.prompt_cache_key;
  if (body.user !== undefined) local.user = body.user;
  ctx.local = local;
  for (const field of LOCAL_ONLY_FIELDS) delete body[field];
  if (body.n != null) delete body.n;
  if (body.modalities != null) delete body.modalities;

  const limit = options.contextLength ?? CONTEXT_LENGTH;
  const requested = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  ctx.promptTokenEstimate = bodyBytes;
  const costly: Array<() => Promise<void>> = [];
  if (body.tools?.some((t) => t.function.parameters) || body.response_format?.type === 'json_schema') costly.push(() => checkSchemas(body));
  if (bodyBytes + (requested ?? MAX_OUTPUT_TOKENS) > limit) {
    // Until the count, the output budget assumes the prompt leaves room for all of it.
    if (requested === undefined) body.max_tokens = MAX_OUTPUT_TOKENS;
    const check = async () => {
      const { tokens: prompt, complete } = await countPromptTokensUpTo(body, limit - (requested ?? 1));
      if (complete) ctx.promptTokens = prompt;
      ctx.promptTokenEstimate = prompt;
      if (requested !== undefined) {
        if (prompt + requested > limit) throw contextLengthExceeded(prompt, requested, limit, !complete);
      } else {
        const room = limit - prompt;
        if (room < 1) throw contextLengthExceeded(prompt, 1, limit, !complete);
        body.max_tokens = Math.min(MAX_OUTPUT_TOKENS, room);
      }
    };
    costly.push(check);
  } else if (requested === undefined) {
    body.max_tokens = MAX_OUTPUT_TOKENS;
  }
  if (costly.length) {
    const run = async () => {
      for (const step of costly) await step();
    };
    if (options.deferCostlyChecks) ctx.costlyChecks = run;
    else await run();
  }
  return body;
}

/**
 * Reads, parses and validates `POST /chat/completions`, then puts the result on the
 * context. Every failure is a TeraError handed to `next`.
 */
export function validate(input: ValidateOptions = {}): Middleware {
  const options = parseOptions(validateOptionsSchema, input, 'validate()');
  return function validateChatCompletion(req: IncomingMessage, res: ServerResponse, next) {
    const ctx = context(req, res);
    readJSONBody(req, options.maxBodyBytes)
      .then(({ value, bytes }) => validateChatRequest(value, bytes, ctx, options))
      .then((body) => {
        ctx.body = body;
        next();
      }, next);
  };
}
