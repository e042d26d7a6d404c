import './context.js';
import {
  markChanged,
  TeraError,
  context,
  type AssembledToolCall,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatTool,
  type ChatTransform,
  type Middleware,
  type RequestContext,
  type ToolCallDelta,
  deriveChunk,
  newToolCallId,
  parseOptions,
  stepBudget,
} from '@tera-gw/core';
import { checkArguments } from './validate-args.js';
import { toolCallsOptionsSchema, type ToolCallsOptions } from './options.js';

interface CallState {
  index: number;
  id: string | undefined;
  name: string;
  args: string;
  /** The id/type/name delta went out. */
  announced: boolean;
  /** Argument bytes that arrived before the name (rare); released after the announcement. */
  held: string;
}

function invalidToolCall(problem: string): TeraError {
  return new TeraError(500, 'server_error', `The model produced an invalid tool call: ${problem}.`, { code: 'invalid_tool_call' });
}

const derive = (
  chunk: ChatCompletionChunk,
  choice: ChatCompletionChunk['choices'][number],
  delta: Record<string, unknown>,
  finish: string | null = null,
) => deriveChunk(chunk, choice.index, delta, finish);

/**
 * The stateful transform for one response: repairs streamed tool calls into OpenAI's shape
 * whatever the upstream did (arguments in one delta, name repeated, id missing, calls
 * interleaved by index), sets `finish_reason: "tool_calls"` when calls were made, checks the
 * assembled arguments, and records them on the context.
 */
export function toolCallsTransform(
  request: Pick<ChatCompletionRequest, 'tools'> | undefined,
  options: ToolCallsOptions = {},
): ChatTransform {
  const tools: readonly ChatTool[] | undefined = request?.tools;
  const buffered = options.mode === 'buffered';
  const strict = options.onInvalid === 'error';
  const calls = new Map<number, CallState>();
  // One budget for every check of this response: many calls cannot add up to more work than one.
  const budget = stepBudget();

  function assemble(ctx: RequestContext): AssembledToolCall[] {
    const out: AssembledToolCall[] = [];
    for (const c of [...calls.values()].sort((a, b) => a.index - b.index)) {
      const check = checkArguments(c.name, c.args, tools, budget);
      const call: AssembledToolCall = { index: c.index, id: c.id ?? '', name: c.name, arguments: c.args, valid: check.valid };
      if (check.problem) call.problem = check.problem;
      out.push(call);
    }
    ctx.toolCalls = out;
    const bad = out.find((c) => !c.valid);
    if (bad && strict) throw invalidToolCall(bad.problem!);
    return out;
  }

  function repairDelta(d: ToolCallDelta, out: Array<Record<string, unknown>>): void {
    let state = calls.get(d.index);
    if (!state) {
      state = { index: d.index, id: undefined, name: '', args: '', announced: false, held: '' };
      calls.set(d.index, state);
    }
    if (d.id && !state.id) state.id = d.id;
    const name = d.function?.name;
    if (name && !state.name) state.name = name;
    const fragment = d.function?.arguments ?? '';
    state.args += fragment;
    if (buffered) return;
    if (!state.announced) {
      if (!state.name) {
        state.held += fragment;
        return;
      }
      state.id ??= newToolCallId();
      state.announced = true;
      out.push({ index: d.index, id: state.id, type: 'function', function: { name: state.name, arguments: '' } });
      const pending = state.held + fragment;
      state.held = '';
      if (pending) out.push({ index: d.index, function: { arguments: pending } });
      return;
    }
    if (fragment) out.push({ index: d.index, function: { arguments: fragment } });
  }

  return {
    name: 'tool-calls',
    // Chunks with tool-call deltas are rebuilt (new objects); an upstream chunk is edited only for its finish reason.
    marksChanges: true,
    completion(body: ChatCompletion, ctx) {
      for (const choice of body.choices) {
        const list = choice.message.tool_calls;
        if (!list?.length) continue;
        list.forEach((call, index) => {
          if (!call.id) call.id = newToolCallId();
          if (!call.type) call.type = 'function';
          calls.set(index, { index, id: call.id, name: call.function.name, args: call.function.arguments, announced: true, held: '' });
        });
        if (choice.finish_reason === 'stop') choice.finish_reason = 'tool_calls';
      }
      if (calls.size) assemble(ctx);
      return body;
    },
    chunk(chunk: ChatCompletionChunk, ctx) {
      const choice = chunk.choices[0];
      if (!choice) return [chunk];
      const deltas = choice.delta.tool_calls;
      const finishing = choice.finish_reason != null;
      if (!deltas?.length && !finishing) return [chunk];

      const out: ChatCompletionChunk[] = [];
      if (deltas?.length) {
        const repaired: Array<Record<string, unknown>> = [];
        for (const d of deltas) repairDelta(d, repaired);
        const { tool_calls: _dropped, ...rest } = choice.delta;
        const hasOther = Object.values(rest).some((v) => v != null && v !== '');
        // Each repaired entry goes in a chunk of its own: the id/name announcement and the first fragment never share one.
        if (hasOther) out.push(derive(chunk, choice, rest));
        for (const entry of repaired) out.push(derive(chunk, choice, { tool_calls: [entry] }));
      }
      if (finishing) {
        const finish = calls.size && choice.finish_reason === 'stop' ? 'tool_calls' : choice.finish_reason!;
        if (calls.size) {
          const assembled = assemble(ctx);
          if (buffered) {
            for (const c of assembled)
              out.push(
                derive(chunk, choice, {
                  tool_calls: [
                    { index: c.index, id: c.id || newToolCallId(), type: 'function', function: { name: c.name, arguments: c.arguments } },
                  ],
                }),
              );
          } else {
            // Calls whose name never came still get announced, so no fragment is lost.
            for (const c of calls.values()) {
              if (c.announced) continue;
              c.announced = true;
              out.push(
                derive(chunk, choice, {
                  tool_calls: [
                    { index: c.index, id: (c.id ??= newToolCallId()), type: 'function', function: { name: c.name, arguments: c.args } },
                  ],
                }),
              );
            }
          }
        }
        if (!deltas?.length) {
          if (choice.finish_reason !== finish) {
            markChanged(chunk);
            choice.finish_reason = finish;
          }
          out.push(chunk);
        } else {
          out.push(derive(chunk, choice, {}, finish));
        }
      }
      return out;
    },
  };
}

/** Registers the tool-call transform for this request (it keeps per-response state). */
export function toolCalls(input: ToolCallsOptions = {}): Middleware {
  const options = parseOptions(toolCallsOptionsSchema, input, 'toolCalls()');
  return function toolCallsStage(req, res, next) {
    const ctx = context(req, res);
    ctx.responseTransforms.push(toolCallsTransform(ctx.body, options));
    next();
  };
}
