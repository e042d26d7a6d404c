import { encode } from 'gpt-tokenizer/encoding/o200k_harmony';
import { SPECIAL, encodeHarmony } from './harmony.js';
import { tokenPieces, type Plan, type TokenPiece } from './plan.js';

/**
 * One generated token (or the few of one piece of text) as the engine emits it, after the
 * prompt's `<|start|>assistant`: a control token or channel header the caller never sees
 * (`control`), reasoning, content, the `<|message|>` that opens a tool call's arguments (`call`),
 * or argument text. The Harmony output of a plan is these steps in order; a stream is one chunk
 * a step, and `token_ids` are their ids.
 */
export interface Step {
  kind: 'control' | 'reasoning' | 'content' | 'call' | 'args';
  ids: number[];
  text: string;
  piece?: TokenPiece;
  /** The tool call a `call` or `args` step belongs to. */
  call?: number;
}

const control = (text: string): Step[] => encodeHarmony(text).map((id) => ({ kind: 'control' as const, ids: [id], text: '' }));
const textSteps = (kind: 'reasoning' | 'content' | 'args', pieces: readonly TokenPiece[], call?: number): Step[] =>
  pieces.map((piece) => ({ kind, ids: encode(piece.text), text: piece.text, piece, ...(call === undefined ? {} : { call }) }));
/** The ids that end the generation: `<|return|>` after a final answer, `<|call|>` after a tool call. */
export interface HarmonyOutput {
  steps: Step[];
  /** The stop token the model ends with (generated, counted, never shown), or none after a stop string. */
  end: number | undefined;
}

/** A plan as the tokens gpt-oss generates for it, in Harmony's grammar. */
export function harmonyOutput(plan: Plan): HarmonyOutput {
  const steps: Step[] = [];
  if (plan.reasoning.length) {
    steps.push(
      ...control('<|channel|>analysis<|message|>'),
      ...textSteps('reasoning', plan.reasoning),
      ...control('<|end|><|start|>assistant'),
    );
  }
  if (plan.toolCalls.length) {
    plan.toolCalls.forEach((call, i) => {
      if (i > 0) steps.push(...control('<|call|><|start|>assistant'));
      steps.push(...control(`<|channel|>commentary to=functions.${call.name} <|constrain|>json`));
      steps.push({ kind: 'call', ids: [SPECIAL['<|message|>']], text: '', call: i });
      steps.push(
        ...textSteps(
          'args',
          tokenPieces(call.arguments, () => 0.5),
          i,
        ),
      );
    });
    return { steps, end: SPECIAL['<|call|>'] };
  }
  steps.push(...control('<|channel|>final<|message|>'), ...textSteps('content', plan.content));
  return { steps, end: plan.stopReason === null ? SPECIAL['<|return|>'] : undefined };
}

/** The steps that fit in `maxTokens` generated ids; `cut` when the budget ended the answer. */
export function cutToBudget(output: HarmonyOutput, maxTokens: number): { steps: Step[]; end: number | undefined; cut: boolean } {
  const steps: Step[] = [];
  let used = 0;
  for (const step of output.steps) {
    if (used + step.ids.length > maxTokens) return { steps, end: undefined, cut: true };
    used += step.ids.length;
    steps.push(step);
  }
  if (output.end !== undefined && used + 1 > maxTokens) return { steps, end: undefined, cut: true };
  return { steps, end: output.end, cut: false };
}

export const idsOf = (steps: readonly Step[], end: number | undefined): number[] => {
  const ids: number[] = [];
  for (const s of steps) for (const id of s.ids) ids.push(id);
  if (end !== undefined) ids.push(end);
  return ids;
};
