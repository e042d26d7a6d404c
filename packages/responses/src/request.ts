import { z } from 'zod';
import { MAX_OUTPUT_TOKENS, invalidRequest, issueToError, type TeraError } from '@tera-gw/core';
import { newId } from './ids.js';
import type { ResponseObject, StoredInputItem } from './types.js';

/** Tools OpenAI runs on its own servers; a self-hosted model has none of them. */
export const HOSTED_TOOL_TYPES: ReadonlySet<string> = new Set([
  'web_search',
  'web_search_preview',
  'web_search_preview_2025_03_11',
  'web_search_2025_08_26',
  'file_search',
  'code_interpreter',
  'image_generation',
  'computer_use_preview',
  'computer_use',
  'computer',
  'mcp',
  'local_shell',
  'shell',
  'apply_patch',
  'tool_search',
  'custom',
]);

const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'Function names must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -.');

const textFormat = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    name: functionName,
    schema: z.record(z.string(), z.unknown()),
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  }),
]);

const INCLUDABLE = [
  'reasoning.encrypted_content',
  'message.output_text.logprobs',
  'file_search_call.results',
  'web_search_call.results',
  'web_search_call.action.sources',
  'message.input_image.image_url',
  'computer_call_output.output.image_url',
  'code_interpreter_call.outputs',
] as const;

/** `POST /responses` as this gateway serves it; anything else is a 400 that names the field. */
export const responsesRequestSchema = z.strictObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.unknown())]).optional(),
  instructions: z.string().nullish(),
  tools: z.array(z.unknown()).max(256).nullish(),
  tool_choice: z.unknown().optional(),
  parallel_tool_calls: z.boolean().nullish(),
  reasoning: z
    .strictObject({
      effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']).nullish(),
      summary: z.enum(['auto', 'concise', 'detailed']).nullish(),
      generate_summary: z.enum(['auto', 'concise', 'detailed']).nullish(),
    })
    .nullish(),
  text: z.strictObject({ format: textFormat.optional(), verbosity: z.enum(['low', 'medium', 'high']).nullish() }).nullish(),
  max_output_tokens: z.int().min(1).max(MAX_OUTPUT_TOKENS).nullish(),
  max_tool_calls: z.int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  metadata: z.record(z.string(), z.string().max(512)).nullish(),
  user: z.string().optional(),
  safety_identifier: z.string().optional(),
  prompt_cache_key: z.string().max(1024).optional(),
  prompt_cache_retention: z.enum(['in_memory', '24h']).nullish(),
  client_metadata: z.record(z.string(), z.unknown()).nullish(),
  include: z.array(z.enum(INCLUDABLE)).nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  truncation: z.enum(['disabled', 'auto']).nullish(),
  background: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_obfuscation: z.boolean().optional() }).nullish(),
  service_tier: z.string().nullish(),
});

export type ResponsesRequest = z.infer<typeof responsesRequestSchema>;

/** A chat tool name and what the caller called it (namespaced tools are flattened for the model). */
export interface ToolName {
  name: string;
  namespace?: string;
}

export function parseResponsesRequest(input: unknown): ResponsesRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json');
  }
  const result = responsesRequestSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw issueToError(result.error.issues[0]!);
  const body = result.data;
  if (body.background === true)
    throw invalidRequest(
      'Background responses are not supported by this gateway; stream the response or wait for it.',
      'background',
      'unsupported_parameter',
    );
  if (body.truncation === 'auto')
    throw invalidRequest(
      "`truncation: 'auto'` is not supported by this gateway: the context is never cut silently. Use 'disabled' and shorten the input.",
      'truncation',
      'unsupported_parameter',
    );
  if (body.input === undefined && !body.previous_response_id) throw invalidRequest("Missing required parameter: 'input'.", 'input');
  return body;
}

// ---- input items -------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const NON_TEXT = new Set(['input_image', 'input_file', 'input_audio', 'image_url', 'file']);

function requireString(item: Obj, field: string, where: string): string {
  const value = item[field];
  if (typeof value !== 'string')
    throw invalidRequest(
      value === undefined ? `Missing required parameter: '${where}.${field}'.` : `Invalid type for '${where}.${field}': expected a string.`,
      `${where}.${field}`,
    );
  return value;
}

/** Text parts, checked: images and files are refused (text-only model), unknown part types named. */
function textParts(content: unknown, where: string): Array<{ type: string; text: string }> {
  if (typeof content === 'string') return [{ type: 'input_text', text: content }];
  if (!Array.isArray(content)) throw invalidRequest(`Invalid type for '${where}': expected a string or an array of content parts.`, where);
  return content.map((part, j) => {
    const at = `${where}[${j}]`;
    if (!isObject(part) || typeof part.type !== 'string') throw invalidRequest(`Invalid content part at '${at}'.`, at);
    if (NON_TEXT.has(part.type))
      throw invalidRequest(
        `Content parts of type '${part.type}' are not supported: openai/gpt-oss-20b is a text-only model.`,
        at,
        'unsupported_content',
      );
    if (part.type === 'input_text' || part.type === 'output_text' || part.type === 'text')
      return { type: part.type === 'text' ? 'input_text' : part.type, text: requireString(part, 'text', at) };
    if (part.type === 'refusal') return { type: 'output_text', text: requireString(part, 'refusal', at) };
    throw invalidRequest(`Unknown content part type '${part.type}' at '${at}'.`, `${at}.type`);
  });
}

/**
 * One caller item, checked and in its stored form (every item gets an id). Sealed reasoning is
 * opened here, so a tampered or foreign item is a 400 naming it.
 */
export function normalizeItem(raw: unknown, where: string, openSealed: (sealed: string) => string | undefined): StoredInputItem {
  if (!isObject(raw)) throw invalidRequest(`Invalid input item at '${where}': expected an object.`, where);
  const type = raw.type ?? (raw.role !== undefined ? 'message' : undefined);
  const id = typeof raw.id === 'string' && raw.id ? raw.id : undefined;
  switch (type) {
    case 'message': {
      const role = raw.role;
      if (role !== 'user' && role !== 'system' && role !== 'developer' && role !== 'assistant')
        throw invalidRequest(
          `Invalid value for '${where}.role': must be one of 'user', 'system', 'developer', 'assistant'.`,
          `${where}.role`,
        );
      const parts = textParts(raw.content, `${where}.content`);
      const content =
        role === 'assistant'
          ? parts.map((p) => ({ type: 'output_text', text: p.text, annotations: [] }))
          : parts.map((p) => ({ type: 'input_text', text: p.text }));
      return { id: id ?? newId('msg'), type: 'message', role, content, status: 'completed' };
    }
    case 'function_call': {
      const item: StoredInputItem = {
        id: id ?? newId('fc'),
        type: 'function_call',
        call_id: requireString(raw, 'call_id', where),
        name: requireString(raw, 'name', where),
        arguments: requireString(raw, 'arguments', where),
        status: 'completed',
      };
      if (typeof raw.namespace === 'string') item.namespace = raw.namespace;
      return item;
    }
    case 'function_call_output': {
      const output = raw.output;
      const text =
        typeof output === 'string'
          ? output
          : textParts(output, `${where}.output`)
              .map((p) => p.text)
              .join('');
      return { id: id ?? newId('item'), type: 'function_call_output', call_id: requireString(raw, 'call_id', where), output: text };
    }
    case 'reasoning': {
      let text: string | undefined;
      if (typeof raw.encrypted_content === 'string' && raw.encrypted_content) {
        text = openSealed(raw.encrypted_content);
        if (text === undefined)
          throw invalidRequest(
            `The encrypted reasoning at '${where}' could not be opened: it was changed, was made for another API key, or was sealed under a secret this gateway no longer has. Send the output items back unchanged, or leave the reasoning item out.`,
            `${where}.encrypted_content`,
            'invalid_encrypted_content',
          );
      } else {
        const parts = Array.isArray(raw.content) ? raw.content : Array.isArray(raw.summary) ? raw.summary : [];
        text = parts
          .map((p: unknown) => (isObject(p) && typeof p.text === 'string' ? p.text : ''))
          .filter(Boolean)
          .join('\n');
      }
      return { id: id ?? newId('rs'), type: 'reasoning', summary: [], content: text ? [{ type: 'reasoning_text', text }] : [] };
    }
    case 'item_reference':
      return { id: requireString(raw, 'id', where), type: 'item_reference' };
    case undefined:
      throw invalidRequest(`Missing required parameter: '${where}.type'.`, `${where}.type`);
    default:
      throw invalidRequest(
        `Input items of type '${typeof type === 'string' ? type : JSON.stringify(type)}' are not supported by this gateway (supported: message, function_call, function_call_output, reasoning, item_reference).`,
        `${where}.type`,
        'unsupported_input_item',
      );
  }
}

// ---- tools -------------------------------------------------------------------------------

export interface ToolTranslation {
  tools: Array<{
    type: 'function';
    function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
  }>;
  /** Chat name -> what the caller called it. */
  names: Map<string, ToolName>;
  /** Hosted tools left out (for a span event). */
  dropped: string[];
}

/** `ns__name`, cut to the 64 characters a function name may have. */
export function flatToolName(namespace: string, name: string): string {
  return `${namespace}__${name}`.replaceAll(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64);
}

function functionTool(raw: Obj, where: string, chatName: string): ToolTranslation['tools'][number] {
  const fn: ToolTranslation['tools'][number]['function'] = { name: chatName };
  if (typeof raw.description === 'string') fn.description = raw.description;
  if (raw.parameters != null) {
    if (!isObject(raw.parameters))
      throw invalidRequest(`Invalid type for '${where}.parameters': expected an object.`, `${where}.parameters`);
    fn.parameters = raw.parameters;
  }
  if (typeof raw.strict === 'boolean') fn.strict = raw.strict;
  return { type: 'function', function: fn };
}

export function translateTools(raw: readonly unknown[], hostedTools: 'drop' | 'reject'): ToolTranslation {
  const out: ToolTranslation = { tools: [], names: new Map(), dropped: [] };
  const add = (tool: ToolTranslation['tools'][number], name: ToolName, where: string) => {
    if (out.names.has(tool.function.name))
      throw invalidRequest(`Duplicate tool name '${tool.function.name}' at '${where}'.`, `${where}.name`);
    out.names.set(tool.function.name, name);
    out.tools.push(tool);
  };
  raw.forEach((t, i) => {
    const where = `tools[${i}]`;
    if (!isObject(t) || typeof t.type !== 'string') throw invalidRequest(`Invalid tool at '${where}'.`, where);
    if (t.type === 'function') {
      const name = requireString(t, 'name', where);
      if (!functionName.safeParse(name).success)
        throw invalidRequest('Function names must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -.', `${where}.name`);
      return add(functionTool(t, where, name), { name }, where);
    }
    if (t.type === 'namespace') {
      const namespace = requireString(t, 'name', where);
      if (!Array.isArray(t.tools)) throw invalidRequest(`Missing required parameter: '${where}.tools'.`, `${where}.tools`);
      t.tools.forEach((inner, j) => {
        const at = `${where}.tools[${j}]`;
        if (!isObject(inner) || typeof inner.type !== 'string') throw invalidRequest(`Invalid tool at '${at}'.`, at);
        if (inner.type !== 'function') {
          if (hostedTools === 'reject')
            throw invalidRequest(`Tools of type '${inner.type}' are not supported by this gateway.`, `${at}.type`, 'unsupported_tool');
          out.dropped.push(`${namespace}.${inner.type}`);
          return;
        }
        const name = requireString(inner, 'name', at);
        add(functionTool(inner, at, flatToolName(namespace, name)), { name, namespace }, at);
      });
      return;
    }
    if (HOSTED_TOOL_TYPES.has(t.type)) {
      if (hostedTools === 'reject')
        throw invalidRequest(
          `The hosted tool '${t.type}' is not available: openai/gpt-oss-20b runs on this gateway's replicas, which host no tools. Declare it as a function tool and run it yourself.`,
          `${where}.type`,
          'unsupported_tool',
        );
      out.dropped.push(t.type);
      return;
    }
    throw invalidRequest(`Unknown tool type '${t.type}' at '${where}'.`, `${where}.type`, 'unsupported_tool');
  });
  return out;
}

/** The chat name of a caller's (name, namespace), through the request's tools when they declare it. */
export function chatToolName(names: ReadonlyMap<string, ToolName>, name: string, namespace: string | undefined): string {
  if (namespace === undefined) return name;
  for (const [chat, declared] of names) if (declared.name === name && declared.namespace === namespace) return chat;
  return flatToolName(namespace, name);
}

export function translateToolChoice(choice: unknown, tools: ToolTranslation): { tool_choice?: unknown; restrictTo?: Set<string> } {
  if (choice === undefined || choice === null) return {};
  if (choice === 'none' || choice === 'auto' || choice === 'required') return { tool_choice: choice };
  if (isObject(choice)) {
    if (choice.type === 'function') {
      const name = chatToolName(tools.names, requireString(choice, 'name', 'tool_choice'), choice.namespace as string | undefined);
      if (!tools.names.has(name))
        throw invalidRequest(`Tool '${String(choice.name)}' named in \`tool_choice\` is not among \`tools\`.`, 'tool_choice.name');
      return { tool_choice: { type: 'function', function: { name } } };
    }
    if (choice.type === 'allowed_tools') {
      const mode = choice.mode;
      if (mode !== 'auto' && mode !== 'required')
        throw invalidRequest("Invalid value for 'tool_choice.mode': must be one of 'auto', 'required'.", 'tool_choice.mode');
      if (!Array.isArray(choice.tools)) throw invalidRequest("Missing required parameter: 'tool_choice.tools'.", 'tool_choice.tools');
      const allowed = new Set<string>();
      choice.tools.forEach((t, i) => {
        const at = `tool_choice.tools[${i}]`;
        if (!isObject(t) || t.type !== 'function') throw invalidRequest(`Only function tools can be allowed at '${at}'.`, at);
        const name = chatToolName(tools.names, requireString(t, 'name', at), t.namespace as string | undefined);
        if (!tools.names.has(name)) throw invalidRequest(`Tool '${String(t.name)}' is not among \`tools\`.`, `${at}.name`);
        allowed.add(name);
      });
      return { tool_choice: mode, restrictTo: allowed };
    }
    if (typeof choice.type === 'string')
      throw invalidRequest(
        `\`tool_choice\` of type '${choice.type}' is not supported: this gateway serves function tools only.`,
        'tool_choice.type',
        'unsupported_tool',
      );
  }
  throw invalidRequest("Invalid value for 'tool_choice'.", 'tool_choice');
}

// ---- messages ----------------------------------------------------------------------------

type ChatMessageOut = Record<string, unknown> & { role: string };

/**
 * Items -> chat messages. Consecutive function calls become one assistant message with
 * `tool_calls`; a reasoning item's text rides on the assistant message that follows it (in
 * `reasoning`; the reasoning stage renames it for vLLM releases that read `reasoning_content`),
 * so the model sees its earlier chain of thought on tool-calling turns.
 */
export function itemsToMessages(items: readonly StoredInputItem[], names: ReadonlyMap<string, ToolName>): ChatMessageOut[] {
  const messages: ChatMessageOut[] = [];
  let reasoning: string | undefined;
  let lastAssistant: ChatMessageOut | undefined;
  for (const item of items) {
    switch (item.type) {
      case 'reasoning': {
        const parts = (item.content as Array<{ text: string }> | undefined) ?? [];
        const text = parts.map((p) => p.text).join('\n');
        if (text) reasoning = reasoning ? `${reasoning}\n${text}` : text;
        break;
      }
      case 'message': {
        const parts = item.content as Array<{ text: string }>;
        const text = parts.map((p) => p.text).join('');
        if (item.role === 'assistant') {
          const message: ChatMessageOut = { role: 'assistant', content: text };
          if (reasoning) message.reasoning = reasoning;
          reasoning = undefined;
          messages.push(message);
          lastAssistant = message;
        } else {
          messages.push({ role: item.role as string, content: text });
          lastAssistant = undefined;
        }
        break;
      }
      case 'function_call': {
        const call = {
          id: item.call_id as string,
          type: 'function',
          function: { name: chatToolName(names, item.name as string, item.namespace as string | undefined), arguments: item.arguments },
        };
        if (lastAssistant && !reasoning) {
          const calls = (lastAssistant.tool_calls ??= []) as unknown[];
          calls.push(call);
        } else {
          lastAssistant = { role: 'assistant', content: null, tool_calls: [call] };
          if (reasoning) lastAssistant.reasoning = reasoning;
          reasoning = undefined;
          messages.push(lastAssistant);
        }
        break;
      }
      case 'function_call_output':
        messages.push({ role: 'tool', tool_call_id: item.call_id, content: item.output });
        lastAssistant = undefined;
        break;
    }
  }
  return messages;
}

/** Chat validation names chat fields; the caller wrote Responses fields. */
export function toResponsesParam(error: TeraError): string | null {
  const param = error.param;
  if (param === null) return null;
  if (param.startsWith('messages')) return 'input';
  if (param.startsWith('max_completion_tokens') || param.startsWith('max_tokens')) return 'max_output_tokens';
  if (param.startsWith('response_format')) return 'text.format';
  if (param.startsWith('reasoning_effort')) return 'reasoning.effort';
  return param;
}

// ---- settings -----------------------------------------------------------------------------

/** The chat fields a Responses request sets beside its messages and tools: reasoning, format, sampling, logprobs, routing. */
export function chatSettings(body: ResponsesRequest): Record<string, unknown> {
  const chat: Record<string, unknown> = {};
  const effort = body.reasoning?.effort;
  if (effort) chat.reasoning_effort = effort === 'minimal' || effort === 'none' ? 'low' : effort === 'xhigh' ? 'high' : effort;
  const format = body.text?.format;
  if (format?.type === 'json_schema') {
    const schema: Record<string, unknown> = { name: format.name, schema: format.schema };
    if (format.description != null) schema.description = format.description;
    if (format.strict != null) schema.strict = format.strict;
    chat.response_format = { type: 'json_schema', json_schema: schema };
  } else if (format) chat.response_format = { type: format.type };
  if (body.max_output_tokens != null) chat.max_completion_tokens = body.max_output_tokens;
  if (body.temperature != null) chat.temperature = body.temperature;
  if (body.top_p != null) chat.top_p = body.top_p;
  if (body.include?.includes('message.output_text.logprobs') === true) {
    chat.logprobs = true;
    if (body.top_logprobs) chat.top_logprobs = body.top_logprobs;
  }
  if (body.prompt_cache_key !== undefined) chat.prompt_cache_key = body.prompt_cache_key;
  if (body.user !== undefined) chat.user = body.user;
  if (body.safety_identifier !== undefined) chat.safety_identifier = body.safety_identifier;
  return chat;
}

/** The response object as it starts (`in_progress`, no output), echoing the request's settings. */
export function responseBase(body: ResponsesRequest, storing: boolean): ResponseObject {
  return {
    id: newId('resp'),
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: 'in_progress',
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: body.model,
    output: [],
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
    store: storing,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: 'disabled',
    usage: null,
    user: body.user ?? null,
    metadata: body.metadata ?? {},
    prompt_cache_key: body.prompt_cache_key ?? null,
    safety_identifier: body.safety_identifier ?? null,
    background: false,
    service_tier: body.service_tier ?? 'default',
  };
}
