/**
 * An upper bound on the size of the program RE2 compiles a pattern into, read from the pattern's
 * text in one pass, before anything is compiled. Compiling costs time and memory in proportion to
 * that program (about 2 µs and 100 bytes an instruction), and repetition multiplies it:
 * `\p{L}{999}` is one thousand instructions, and a 1,000-character alternation of such
 * repetitions 86,000 (150 ms and 10 MB to compile). RE2 itself refuses programs over a memory
 * budget, but only after building them; this bound refuses them first.
 *
 * The count follows RE2's compiler: one instruction per literal, class or assertion; one more
 * per alternative, per `*`, `+` and `?`, and two per capture; `x{n,m}` is `n` copies of `x` and
 * `m - n` optional ones (`x{n,}`: `n` copies and a loop). Checked against RE2JS's programs in
 * the tests: never under, at most a few instructions over. A syntax this reader does not know counts as a literal: RE2 then
 * rejects the pattern, which is not compiled for longer for it. Saturates at 2^30.
 */
const CAP = 2 ** 30;

interface Frame {
  /** Instructions of the alternatives already closed, plus one per `|`. */
  alternatives: number;
  /** Instructions of the current alternative. */
  sequence: number;
  /** The last atom's instructions, which a quantifier multiplies. */
  last: number;
  capture: boolean;
}

const sat = (n: number) => (n > CAP ? CAP : n);

/** Where the repetition `{n}`, `{n,}` or `{n,m}` starting at `at` ends, and its counts (`max` undefined: open); undefined when `{` is a literal there. */
function repetition(source: string, at: number): { end: number; min: number; max: number | undefined } | undefined {
  const match = /^\{(\d{1,9})(,(\d{0,9}))?\}/.exec(source.slice(at, at + 24));
  if (!match) return undefined;
  const min = Number(match[1]);
  const max = match[2] === undefined ? min : match[3] === '' ? undefined : Math.max(min, Number(match[3]));
  return { end: at + match[0].length, min, max };
}

/** The index just past the character class opening at `at` (`[...]`, `[^]...]`, with escapes and `[:name:]`). */
function classEnd(source: string, at: number): number {
  let i = at + 1;
  if (source[i] === '^') i++;
  // A `]` first in the class is a literal.
  if (source[i] === ']') i++;
  while (i < source.length && source[i] !== ']') {
    if (source[i] === '\\') i += 2;
    else if (source.startsWith('[:', i)) {
      const close = source.indexOf(':]', i + 2);
      i = close === -1 ? i + 1 : close + 2;
    } else i++;
  }
  return Math.min(source.length, i + 1);
}

/** The index just past the escape starting at `at` (`\d`, `\p{Greek}`, `\pL`, `\x{10FFFF}`, `\x41`, `\Q...\E`). */
function escapeEnd(source: string, at: number): { end: number; literals: number } {
  const kind = source[at + 1];
  if ((kind === 'p' || kind === 'P' || kind === 'x') && source[at + 2] === '{') {
    const close = source.indexOf('}', at + 3);
    return { end: close === -1 ? source.length : close + 1, literals: 1 };
  }
  if (kind === 'p' || kind === 'P') return { end: at + 3, literals: 1 };
  if (kind === 'x') return { end: at + 4, literals: 1 };
  if (kind === 'Q') {
    const close = source.indexOf('\\E', at + 2);
    const end = close === -1 ? source.length : close + 2;
    return { end, literals: Math.max(1, (close === -1 ? source.length : close) - (at + 2)) };
  }
  return { end: at + 2, literals: 1 };
}

export function regexProgramSize(source: string): number {
  const stack: Frame[] = [{ alternatives: 0, sequence: 0, last: 0, capture: false }];
  let top = stack[0]!;
  const atom = (size: number) => {
    top.last = size;
    top.sequence = sat(top.sequence + size);
  };
  /** `x{min,max}`: `min` copies of x, then `max - min` optional ones (one instruction more each), or one loop when open. */
  const quantify = (min: number, max: number | undefined) => {
    const x = top.last;
    const repeated = sat(min * x + (max === undefined ? x + 1 : (max - min) * (x + 1)) + 1);
    top.sequence = sat(top.sequence - x + repeated);
    top.last = repeated;
  };
  for (let i = 0; i < source.length;) {
    const c = source[i]!;
    if (c === '\\') {
      const { end, literals } = escapeEnd(source, i);
      atom(literals);
      i = end;
    } else if (c === '[') {
      atom(1);
      i = classEnd(source, i);
    } else if (c === '(') {
      // `(?i)` sets flags and is no group; `(?:`, `(?i:`, `(?P<name>`, `(?<name>` and `(` open one.
      const flags = /^\(\?[a-zA-Z-]*\)/.exec(source.slice(i, i + 16));
      if (flags) {
        i += flags[0].length;
        continue;
      }
      const capture = source[i + 1] !== '?' || source.startsWith('(?P<', i) || source.startsWith('(?<', i);
      let end = i + 1;
      if (source[i + 1] === '?') {
        const named = /^\(\?P?<[^>]*>/.exec(source.slice(i, i + 80));
        const nonCapturing = /^\(\?[a-zA-Z-]*:/.exec(source.slice(i, i + 16));
        end = i + (named?.[0].length ?? nonCapturing?.[0].length ?? 2);
      }
      top = { alternatives: 0, sequence: 0, last: 0, capture };
      stack.push(top);
      i = end;
    } else if (c === ')' && stack.length > 1) {
      const group = stack.pop()!;
      top = stack.at(-1)!;
      atom(sat(group.alternatives + group.sequence + (group.capture ? 2 : 0)));
      i++;
    } else if (c === '|') {
      top.alternatives = sat(top.alternatives + top.sequence + 1);
      top.sequence = 0;
      top.last = 0;
      i++;
    } else if (c === '*' || c === '+' || c === '?') {
      quantify(c === '+' ? 1 : 0, c === '?' ? 1 : undefined);
      i += source[i + 1] === '?' ? 2 : 1;
    } else if (c === '{') {
      const rep = repetition(source, i);
      if (rep) {
        quantify(rep.min, rep.max);
        i = rep.end + (source[rep.end] === '?' ? 1 : 0);
      } else {
        atom(1);
        i++;
      }
    } else {
      atom(1);
      i++;
    }
  }
  // Unclosed groups (a syntax error RE2 reports) are counted as closed.
  while (stack.length > 1) {
    const group = stack.pop()!;
    top = stack.at(-1)!;
    atom(sat(group.alternatives + group.sequence + 2));
  }
  // The match instruction and the unanchored prefix loop.
  return sat(top.alternatives + top.sequence + 3);
}
