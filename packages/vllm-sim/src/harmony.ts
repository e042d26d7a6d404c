import { messageText, type ChatCompletionRequest, type ChatTool } from '@tera-gw/core';
import { decode, encode } from 'gpt-tokenizer/encoding/o200k_harmony';

/**
 * gpt-oss's Harmony format as vLLM renders a chat request for the engine (openai-harmony's
 * `render_conversation_for_completion`, as vLLM's `harmony.py` calls it): a system message with
 * the reasoning effort and the date, a developer message with the instructions and the function
 * tools in Harmony's TypeScript-like form, the conversation, then `<|start|>assistant`. The
 * simulator reads its own renders back: the prompt a continuation request sends is all it gets.
 */
export const SPECIAL = {
  '<|return|>': 200002,
  '<|constrain|>': 200003,
  '<|channel|>': 200005,
  '<|start|>': 200006,
  '<|end|>': 200007,
  '<|message|>': 200008,
  '<|call|>': 200012,
} as const;
export type Marker = keyof typeof SPECIAL;
const MARKER_OF = new Map<number, Marker>(Object.entries(SPECIAL).map(([text, id]) => [id, text as Marker]));
const MARKERS = /(<\|(?:return|constrain|channel|start|end|message|call)\|>)/;

/** Token ids of Harmony text: control tokens as their ids, the text between as o200k tokens. */
export function encodeHarmony(text: string): number[] {
  const ids: number[] = [];
  for (const part of text.split(MARKERS)) {
    if (!part) continue;
    const special = SPECIAL[part as Marker];
    if (special !== undefined) ids.push(special);
    else for (const id of encode(part)) ids.push(id);
  }
  return ids;
}

/** The text of token ids, control tokens written out (vLLM's `skip_special_tokens: false`), or left out. */
export function decodeHarmony(ids: readonly number[], withMarkers = true): string {
  let text = '';
  let run: number[] = [];
  const flush = () => {
    if (run.length) text += decode(run);
    run = [];
  };
  for (const id of ids) {
    const marker = MARKER_OF.get(id);
    if (marker === undefined) {
      run.push(id);
      continue;
    }
    flush();
    if (withMarkers) text += marker;
  }
  flush();
  return text;
}

export const isMarker = (id: number): boolean => MARKER_OF.has(id);

type Schema = Record<string, unknown>;

/** A JSON Schema as Harmony's TypeScript-like type (the subset tools use: objects, enums, arrays, unions). */
function typeOf(schema: unknown, indent: string): string {
  if (typeof schema !== 'object' || schema === null) return 'any';
  const s = schema as Schema;
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const variants = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (Array.isArray(variants)) return variants.map((v) => typeOf(v, indent)).join(' | ');
  const type = Array.isArray(s.type) ? (s.type as string[]).find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'string':
    case 'boolean':
    case 'null':
      return type;
    case 'number':
    case 'integer':
      return 'number';
    case 'array':
      return `${typeOf(s.items, indent)}[]`;
    case 'object':
      return objectType(s, indent);
    default:
      return s.properties ? objectType(s, indent) : 'any';
  }
}

function objectType(s: Schema, indent: string): string {
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const inner = `${indent}`;
  let out = '{\n';
  for (const [name, prop] of Object.entries(props)) {
    if (typeof prop.description === 'string') out += `${inner}// ${prop.description.replaceAll('\n', ' ')}\n`;
    out += `${inner}${name}${required.has(name) ? '' : '?'}: ${typeOf(prop, indent)},\n`;
  }
  return `${out}${indent}}`;
}

function renderTools(tools: readonly ChatTool[]): string {
  let out = '# Tools\n\n## functions\n\nnamespace functions {\n\n';
  for (const tool of tools) {
    const fn = tool.function;
    if (fn.description) out += `// ${fn.description.replaceAll('\n', ' ')}\n`;
    const params = fn.parameters;
    const hasParams = params && Object.keys(params.properties ?? {}).length > 0;
    out += hasParams ? `type ${fn.name} = (_: ${typeOf(params, '')}) => any;\n\n` : `type ${fn.name} = () => any;\n\n`;
  }
  return `${out}} // namespace functions`;
}

/** vLLM's own setting: the conversation start date every render uses instead of the server's current day. */
const startDate = process.env.VLLM_SYSTEM_START_DATE;
const todayUTC = () => startDate ?? new Date().toISOString().slice(0, 10);

/** The Harmony prompt of a chat request, ending where the model's answer starts (`<|start|>assistant`). */
export function renderPrompt(body: ChatCompletionRequest, date = todayUTC()): string {
  const tools = body.tools ?? [];
  let text =
    `<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: ${date}\n\n` +
    `Reasoning: ${body.reasoning_effort ?? 'medium'}\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.`;
  if (tools.length) text += "\nCalls to these tools must go to the commentary channel: 'functions'.";
  text += '<|end|>';
  const instructions = body.messages
    .filter((m) => m.role === 'system' || m.role === 'developer')
    .map((m) => messageText(m))
    .join('\n');
  const format = body.response_format?.type === 'json_schema' ? body.response_format.json_schema : undefined;
  const developer = [
    instructions ? `# Instructions\n\n${instructions}` : '',
    tools.length ? renderTools(tools) : '',
    format ? `# Response Formats\n\n## ${format.name}\n\n${JSON.stringify(format.schema ?? {})}` : '',
  ].filter(Boolean);
  if (developer.length) text += `<|start|>developer<|message|>${developer.join('\n\n')}<|end|>`;
  const names = new Map<string, string>();
  for (const m of body.messages) {
    if (m.role === 'user') text += `<|start|>user<|message|>${messageText(m)}<|end|>`;
    else if (m.role === 'assistant') {
      const reasoning =
        (m as { reasoning?: string | null; reasoning_content?: string | null }).reasoning ??
        (m as { reasoning_content?: string | null }).reasoning_content;
      const calls = m.tool_calls ?? [];
      // Reasoning is carried into turns that call tools (the model needs it for the call's result); dropped elsewhere.
      if (reasoning && calls.length) text += `<|start|>assistant<|channel|>analysis<|message|>${reasoning}<|end|>`;
      const content = messageText(m);
      if (content) text += `<|start|>assistant<|channel|>final<|message|>${content}<|end|>`;
      for (const call of calls) {
        if (call.type !== 'function') continue;
        names.set(call.id, call.function.name);
        text += `<|start|>assistant<|channel|>commentary to=functions.${call.function.name} <|constrain|>json<|message|>${call.function.arguments}<|call|>`;
      }
    } else if (m.role === 'tool') {
      const name = names.get(m.tool_call_id) ?? 'tool';
      text += `<|start|>functions.${name} to=assistant<|channel|>commentary<|message|>${messageText(m)}<|end|>`;
    }
  }
  return `${text}<|start|>assistant`;
}

/** What the simulated model reads in a rendered prompt. */
export interface PromptReading {
  effort: 'low' | 'medium' | 'high';
  /** The last user message. */
  lastUser: string;
  /** The conversation's last message is a tool result: its text. */
  toolResult: string | undefined;
  tools: ChatTool[];
  /** The structured output asked for (the developer message's response format). */
  responseSchema: unknown;
}

/** Parses Harmony's TypeScript-like types back into JSON Schema (the subset `typeOf` writes). */
class TypeReader {
  private at = 0;
  constructor(private readonly text: string) {}

  private skipSpace(): void {
    for (;;) {
      while (/\s/.test(this.text[this.at] ?? '')) this.at++;
      if (!this.text.startsWith('//', this.at)) return;
      const end = this.text.indexOf('\n', this.at);
      this.at = end === -1 ? this.text.length : end + 1;
    }
  }

  private eat(token: string): boolean {
    this.skipSpace();
    if (!this.text.startsWith(token, this.at)) return false;
    this.at += token.length;
    return true;
  }

  type(): Schema {
    const variants = [this.primary()];
    while (this.eat('|')) variants.push(this.primary());
    if (variants.every((v) => 'const' in v)) return { type: 'string', enum: variants.map((v) => v.const) };
    return variants.length === 1 ? variants[0]! : { anyOf: variants };
  }

  private primary(): Schema {
    this.skipSpace();
    let schema: Schema;
    if (this.eat('{')) schema = this.object();
    else if (this.text[this.at] === '"') {
      const end = this.text.indexOf('"', this.at + 1);
      schema = { const: JSON.parse(this.text.slice(this.at, end + 1)) as unknown };
      this.at = end + 1;
    } else {
      const word = /^[A-Za-z_]+/.exec(this.text.slice(this.at))?.[0] ?? '';
      this.at += word.length;
      schema = word === 'any' || !word ? {} : { type: word };
    }
    while (this.eat('[]')) schema = { type: 'array', items: schema };
    return schema;
  }

  private object(): Schema {
    const properties: Record<string, Schema> = {};
    const required: string[] = [];
    while (!this.eat('}')) {
      this.skipSpace();
      const name = /^[A-Za-z0-9_$-]+/.exec(this.text.slice(this.at))?.[0];
      if (!name) break;
      this.at += name.length;
      const optional = this.eat('?');
      this.eat(':');
      properties[name] = this.type();
      if (!optional) required.push(name);
      this.eat(',');
    }
    return { type: 'object', properties, required };
  }
}

function readTools(developer: string): ChatTool[] {
  const tools: ChatTool[] = [];
  const namespace = /namespace functions \{\n\n([\s\S]*?)\} \/\/ namespace functions/.exec(developer)?.[1] ?? '';
  const declaration = /((?:\/\/ [^\n]*\n)*)type ([A-Za-z0-9_.-]+) = \((?:_: )?/g;
  for (let m = declaration.exec(namespace); m; m = declaration.exec(namespace)) {
    const description = m[1]!.replace(/^\/\/ /gm, '').trim();
    const rest = namespace.slice(declaration.lastIndex);
    const parameters = rest.startsWith(')') ? { type: 'object', properties: {} } : new TypeReader(rest).type();
    tools.push({ type: 'function', function: { name: m[2]!, ...(description ? { description } : {}), parameters } });
  }
  return tools;
}

/** Reads a rendered prompt as the model sees it: the effort, the last user message or tool result, the tools, the output format. */
export function readPrompt(text: string): PromptReading {
  const blocks = [
    ...text.matchAll(
      /<\|start\|>([^<]*?)(?:<\|channel\|>[^<]*(?:<\|constrain\|>[^<]*)?)?<\|message\|>([\s\S]*?)(?:<\|end\|>|<\|call\|>|$)/g,
    ),
  ];
  const developer = blocks.find((b) => b[1] === 'developer')?.[2] ?? '';
  const last = blocks.at(-1);
  const formatAt = developer.indexOf('# Response Formats\n\n## ');
  let responseSchema: unknown;
  if (formatAt !== -1) {
    const json = developer.slice(developer.indexOf('\n\n', formatAt + 22) + 2);
    try {
      responseSchema = JSON.parse(json);
    } catch {
      responseSchema = undefined;
    }
  }
  return {
    effort: (/\nReasoning: (low|medium|high)\n/.exec(text)?.[1] ?? 'medium') as PromptReading['effort'],
    lastUser: blocks.filter((b) => b[1] === 'user').at(-1)?.[2] ?? '',
    toolResult: last?.[1]?.startsWith('functions.') ? last[2] : undefined,
    tools: readTools(developer),
    responseSchema,
  };
}
