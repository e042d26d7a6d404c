/** Harmony's control tokens, as gpt-oss emits them (PROTOCOL.md, "Harmony leaks"). */
export const CONTROL_TOKENS = ['<|start|>', '<|end|>', '<|message|>', '<|channel|>', '<|constrain|>', '<|call|>', '<|return|>'] as const;
export type ControlToken = (typeof CONTROL_TOKENS)[number];

const LONGEST = Math.max(...CONTROL_TOKENS.map((t) => t.length));

/** The control token that starts at `at`, if a whole one does. */
export function tokenAt(text: string, at: number): ControlToken | undefined {
  if (text.charCodeAt(at) !== 60 /* < */ || text.charCodeAt(at + 1) !== 124 /* | */) return undefined;
  for (const t of CONTROL_TOKENS) if (text.startsWith(t, at)) return t;
  return undefined;
}

/** True when `tail` (from a `<` to the end of what has arrived) could still grow into a control token. */
export function couldBeToken(tail: string): boolean {
  if (tail.length >= LONGEST) return false;
  for (const t of CONTROL_TOKENS) if (t.startsWith(tail)) return true;
  return false;
}

/** Removes whole control tokens; returns the text unchanged (same string) when there are none. */
export function stripTokens(text: string): { text: string; removed: number } {
  if (text.indexOf('<|') === -1) return { text, removed: 0 };
  let out = '';
  let removed = 0;
  let from = 0;
  for (let i = text.indexOf('<|'); i !== -1; i = text.indexOf('<|', i + 1)) {
    const t = tokenAt(text, i);
    if (!t) continue;
    out += text.slice(from, i);
    from = i + t.length;
    removed++;
    i = from - 1;
  }
  return removed ? { text: out + text.slice(from), removed } : { text, removed: 0 };
}

/**
 * A tool name as the model meant it: cut at the first control token, without the
 * `functions.` recipient prefix. `query_dataset<|channel|>commentary` -> `query_dataset`.
 */
export function cleanToolName(name: string): string {
  let out = name;
  const cut = out.indexOf('<|');
  if (cut !== -1) out = out.slice(0, cut);
  out = out.trim();
  if (out.startsWith('functions.')) out = out.slice('functions.'.length);
  return out;
}
