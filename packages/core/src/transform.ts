import type { RequestContext } from './context.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from './schema.js';

/**
 * The one contract between stages: plain functions over parsed values, never bytes.
 * The terminal handler parses upstream output once, runs these in order, serializes once.
 */
export interface ChatTransform {
  readonly name: string;
  request?(body: ChatCompletionRequest, ctx: RequestContext): ChatCompletionRequest;
  completion?(body: ChatCompletion, ctx: RequestContext): ChatCompletion;
  /** Streaming: zero or more chunks out for each chunk in. */
  chunk?(chunk: ChatCompletionChunk, ctx: RequestContext): ChatCompletionChunk[];
  /**
   * This transform calls `markChanged(chunk)` on every chunk it receives and edits in place.
   * When every transform of a response says so, a chunk that comes out as it went in leaves
   * as the upstream's own bytes instead of being serialized again (a third of a streamed
   * event's CPU). Without it, every chunk is serialized.
   */
  readonly marksChanges?: boolean;
  /** The upstream stream finished; chunks to emit before `[DONE]`. */
  end?(ctx: RequestContext): ChatCompletionChunk[];
}

const CHANGED = Symbol('tera.chunk.changed');

/** A transform edited this chunk in place: its upstream bytes no longer describe it. */
export function markChanged(chunk: ChatCompletionChunk): void {
  (chunk as { [CHANGED]?: true })[CHANGED] = true;
}

export function isChanged(chunk: ChatCompletionChunk): boolean {
  return (chunk as { [CHANGED]?: true })[CHANGED] === true;
}

/** Every chunk transform of the list marks its edits (or there is none), so unedited chunks may keep their bytes. */
export const transformsMarkChanges = (transforms: readonly ChatTransform[]): boolean =>
  transforms.every((t) => t.chunk === undefined || t.marksChanges === true);

export function applyRequestTransforms(body: ChatCompletionRequest, ctx: RequestContext): ChatCompletionRequest {
  let out = body;
  for (const t of ctx.requestTransforms) if (t.request) out = t.request(out, ctx);
  return out;
}

export function applyCompletionTransforms(body: ChatCompletion, ctx: RequestContext): ChatCompletion {
  let out = body;
  for (const t of ctx.responseTransforms) if (t.completion) out = t.completion(out, ctx);
  return out;
}

/**
 * Runs one upstream chunk through every transform. Chunks a transform emits go through
 * the transforms after it, never back through earlier ones.
 */
export function applyChunkTransforms(
  chunk: ChatCompletionChunk,
  transforms: readonly ChatTransform[],
  ctx: RequestContext,
  from = 0,
): ChatCompletionChunk[] {
  let current: ChatCompletionChunk[] = [chunk];
  for (let i = from; i < transforms.length; i++) {
    const t = transforms[i]!;
    if (!t.chunk) continue;
    if (current.length === 1) {
      current = t.chunk(current[0]!, ctx);
    } else {
      const next: ChatCompletionChunk[] = [];
      for (const c of current) for (const o of t.chunk(c, ctx)) next.push(o);
      current = next;
    }
    if (current.length === 0) break;
  }
  return current;
}

/** The stream ended: each transform's `end` output flows through the transforms after it. */
export function applyEndTransforms(transforms: readonly ChatTransform[], ctx: RequestContext): ChatCompletionChunk[] {
  const out: ChatCompletionChunk[] = [];
  for (let i = 0; i < transforms.length; i++) {
    const t = transforms[i]!;
    const emitted = t.end?.(ctx) ?? [];
    for (const c of emitted) for (const o of applyChunkTransforms(c, transforms, ctx, i + 1)) out.push(o);
  }
  return out;
}
