import {
  context,
  recordEvent,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatTransform,
  type Middleware,
  type RequestContext,
  deriveChunk,
  markChanged,
  newToolCallId,
  type ReasoningFields,
} from '@tera-gw/core';
import { HarmonyContentMachine, TokenStripper, type Piece, type RepairKind } from './machine.js';
import { cleanToolName, stripTokens } from './tokens.js';

/** Repairs made, counted on the context (for the `tera.repairs` metric) and one span event per kind. */
function recordRepairs(ctx: RequestContext, kinds: readonly RepairKind[]): void {
  if (!kinds.length) return;
  const repairs = (ctx.repairs ??= {});
  for (const kind of kinds) {
    const key = `harmony.${kind}`;
    repairs[key] = (repairs[key] ?? 0) + 1;
  }
  for (const kind of new Set(kinds)) recordEvent(ctx, 'tera.harmony.repair', { 'tera.repair.kind': kind });
}

/** Control tokens out of both reasoning fields of a message or a delta, by `strip`; true when one changed. */
function stripReasoning(target: ReasoningFields, strip: (field: 'reasoning' | 'reasoning_content', text: string) => string): boolean {
  let changed = false;
  for (const field of ['reasoning', 'reasoning_content'] as const) {
    const value = target[field];
    if (typeof value !== 'string' || !value) continue;
    const clean = strip(field, value);
    if (clean !== value) {
      target[field] = clean;
      changed = true;
    }
  }
  return changed;
}

/** Fixes a tool name in place when the fix names a declared tool; counts either way. */
function repairName(name: string, declared: ReadonlySet<string>, repairs: RepairKind[]): string {
  if (declared.has(name)) return name;
  const clean = cleanToolName(name);
  if (clean !== name && declared.has(clean)) {
    repairs.push('tool_name');
    return clean;
  }
  return name;
}

/**
 * The Harmony repair as a `ChatTransform`, per response (it keeps stream state). Register it
 * before the reasoning and tool-call transforms so they only see clean fields. Text without
 * exact Harmony markers passes byte for byte.
 */
export function harmonyTransform(request: Pick<ChatCompletionRequest, 'tools'> | undefined): ChatTransform {
  const declared = new Set((request?.tools ?? []).map((t) => t.function.name));
  const machine = new HarmonyContentMachine(declared);
  const reasoningStrippers = { reasoning: new TokenStripper(), reasoning_content: new TokenStripper() };
  let reported = 0;
  let nextToolIndex = 0;
  let madeCalls = false;
  let template: ChatCompletionChunk | undefined;
  const nameRepairs: RepairKind[] = [];

  function report(ctx: RequestContext): void {
    const fresh = [...machine.repairs.slice(reported), ...nameRepairs.splice(0)];
    reported = machine.repairs.length;
    const stripped = reasoningStrippers.reasoning.removed + reasoningStrippers.reasoning_content.removed;
    if (stripped) {
      for (let i = 0; i < stripped; i++) fresh.push('control_token');
      reasoningStrippers.reasoning.removed = 0;
      reasoningStrippers.reasoning_content.removed = 0;
    }
    recordRepairs(ctx, fresh);
  }

  /** Chunks carrying what the machine produced: content and reasoning in one delta, each tool call in its own. */
  function chunksFor(pieces: Piece[], base: ChatCompletionChunk, index: number): ChatCompletionChunk[] {
    const out: ChatCompletionChunk[] = [];
    let delta: Record<string, string> | undefined;
    const derive = (d: Record<string, unknown>): ChatCompletionChunk => deriveChunk(base, index, d);
    for (const p of pieces) {
      if (p.kind === 'tool') {
        delta = undefined;
        madeCalls = true;
        out.push(
          derive({
            tool_calls: [
              { index: nextToolIndex++, id: newToolCallId(), type: 'function', function: { name: p.name, arguments: p.arguments } },
            ],
          }),
        );
        continue;
      }
      if (!delta) {
        delta = {};
        out.push(derive(delta));
      }
      delta[p.kind] = (delta[p.kind] ?? '') + p.text;
    }
    return out;
  }

  return {
    name: 'harmony',
    marksChanges: true,
    completion(body: ChatCompletion, ctx) {
      for (const choice of body.choices) {
        const message = choice.message as ChatCompletion['choices'][number]['message'] & ReasoningFields;
        const repairs: RepairKind[] = [];
        for (const call of message.tool_calls ?? []) call.function.name = repairName(call.function.name, declared, repairs);
        if (typeof message.content === 'string' && message.content) {
          const m = new HarmonyContentMachine(declared);
          const pieces: Piece[] = [];
          m.feed(message.content, pieces);
          m.end(pieces);
          repairs.push(...m.repairs);
          if (m.repairs.length) {
            let content = '';
            let reasoning = '';
            const calls = message.tool_calls ? [...message.tool_calls] : [];
            for (const p of pieces) {
              if (p.kind === 'content') content += p.text;
              else if (p.kind === 'reasoning') reasoning += p.text;
              else calls.push({ id: newToolCallId(), type: 'function', function: { name: p.name, arguments: p.arguments } });
            }
            if (reasoning) {
              const field = message.reasoning_content != null && message.reasoning == null ? 'reasoning_content' : 'reasoning';
              message[field] = (message[field] ?? '') + reasoning;
            }
            if (calls.length !== (message.tool_calls?.length ?? 0)) {
              message.tool_calls = calls;
              choice.finish_reason = 'tool_calls';
            }
            message.content = content === '' && calls.length ? null : content;
          }
        }
        stripReasoning(message, (_field, text) => {
          const stripped = stripTokens(text);
          for (let i = 0; i < stripped.removed; i++) repairs.push('control_token');
          return stripped.text;
        });
        recordRepairs(ctx, repairs);
      }
      return body;
    },
    chunk(chunk: ChatCompletionChunk, ctx) {
      const choice = chunk.choices[0];
      if (!choice) return [chunk];
      template ??= chunk;
      const delta = choice.delta as ChatCompletionChunk['choices'][number]['delta'] & ReasoningFields;
      for (const call of delta.tool_calls ?? []) {
        if (call.index >= nextToolIndex) nextToolIndex = call.index + 1;
        const name = call.function?.name;
        if (!name) continue;
        const repaired = repairName(name, declared, nameRepairs);
        if (repaired !== name) {
          call.function!.name = repaired;
          markChanged(chunk);
        }
      }
      if (stripReasoning(delta, (field, text) => reasoningStrippers[field].feed(text))) markChanged(chunk);
      const content = delta.content;
      const finishing = choice.finish_reason != null;
      // The fast path: no content to read (reasoning, tool calls) or no leak being read, nothing held, no marker in sight.
      if (!finishing && (typeof content !== 'string' || (machine.idle && content.indexOf('<') === -1))) {
        if (nameRepairs.length) report(ctx);
        return [chunk];
      }
      const pieces: Piece[] = [];
      if (typeof content === 'string' && content) machine.feed(content, pieces);
      if (finishing) machine.end(pieces);
      // The first piece of content stays in this chunk (keeping its role and logprobs); the rest follow.
      let out: ChatCompletionChunk[] = [chunk];
      if (typeof content === 'string') {
        const first = pieces[0];
        if (first && first.kind === 'content') {
          if (first.text !== content) {
            delta.content = first.text;
            markChanged(chunk);
          }
          pieces.shift();
        } else if (content) {
          delete delta.content;
          markChanged(chunk);
        }
      }
      const extra = chunksFor(pieces, chunk, choice.index);
      if (finishing) {
        // Finish after everything the machine flushed.
        const finish = choice.finish_reason!;
        choice.finish_reason = null;
        markChanged(chunk);
        const last = {
          ...chunk,
          choices: [
            { index: choice.index, delta: {}, logprobs: null, finish_reason: madeCalls && finish === 'stop' ? 'tool_calls' : finish },
          ],
        };
        out = [...out, ...extra, last];
      } else {
        out = [...out, ...extra];
      }
      report(ctx);
      return out.filter((c) => c === out[out.length - 1] || !isEmpty(c));
    },
    end(ctx) {
      // A stream without a finish chunk: flush what is held.
      const pieces: Piece[] = [];
      machine.end(pieces);
      const tail = reasoningStrippers.reasoning.flush();
      if (tail) pieces.push({ kind: 'reasoning', text: tail });
      report(ctx);
      if (!template) return [];
      const index = template.choices[0]?.index ?? 0;
      const out = pieces.length ? chunksFor(pieces, template, index) : [];
      // vLLM before 0.17 streams reasoning as `reasoning_content`: its held tail leaves in that field too.
      const legacyTail = reasoningStrippers.reasoning_content.flush();
      if (legacyTail) out.push(deriveChunk(template, index, { reasoning_content: legacyTail }));
      return out;
    },
  };
}

function isEmpty(chunk: ChatCompletionChunk): boolean {
  if (chunk.usage || chunk.choices.length !== 1) return false;
  const choice = chunk.choices[0]!;
  if (choice.finish_reason != null || choice.logprobs != null) return false;
  for (const key in choice.delta) {
    const v = (choice.delta as Record<string, unknown>)[key];
    if (v != null && v !== '') return false;
  }
  return true;
}

/** Registers the Harmony repair for this request, first among the response transforms. */
export function harmony(): Middleware {
  return function harmonyStage(req, res, next) {
    const ctx = context(req, res);
    ctx.responseTransforms.unshift(harmonyTransform(ctx.body));
    next();
  };
}
