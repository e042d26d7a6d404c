import { cleanToolName, couldBeToken, tokenAt } from './tokens.js';

export type Piece =
  { kind: 'content'; text: string } | { kind: 'reasoning'; text: string } | { kind: 'tool'; name: string; arguments: string };

/** What a repair was, for the counts operators see. */
export type RepairKind =
  'control_token' | 'analysis_in_content' | 'tool_call_in_content' | 'tool_call_undeclared' | 'tool_call_unparsable' | 'tool_name';

type State = 'start' | 'text' | 'role' | 'header' | 'analysis' | 'toolargs' | 'plainTool' | 'plainAnalysis';

const PLAIN_ANALYSIS = 'analysis';
const PLAIN_FINAL = 'assistantfinal';
const PLAIN_TOOL = 'commentary to=functions.';
// Harmony channel headers are short; a longer run without `<|message|>` is not a header.
const MAX_HEADER = 256;
// A stripped tool call is a name and JSON arguments; past this it is prose.
const MAX_PLAIN_TOOL = 64 * 1024;
const PLAIN_TOOL_FORM =
  /^commentary to=functions\.([A-Za-z0-9_.-]+)\s*(?:<\|constrain\|>)?\s*(?:json)?\s*(?:<\|message\|>)?\s*(\{[\s\S]*\})\s*(?:<\|call\|>)?\s*$/;

/**
 * The content field of one choice, as a stream of text: recognises Harmony's channels and
 * control tokens and sorts the text into content, reasoning and tool calls. Text with no
 * exact Harmony marker comes out byte for byte, held back only while it could still begin one.
 */
export class HarmonyContentMachine {
  private state: State = 'start';
  private buffer = '';
  private header = '';
  private toolName = '';
  private toolRaw = '';
  /** Text since the last `<|channel|>`, kept to restore a leak that turns out not to be one. */
  readonly repairs: RepairKind[] = [];

  constructor(private readonly declared: ReadonlySet<string>) {}

  /** True when nothing is held and no leak is being read: the caller's fast path. */
  get idle(): boolean {
    return this.state === 'text' && this.buffer === '';
  }

  feed(text: string, out: Piece[]): void {
    this.buffer += text;
    this.run(out, false);
  }

  end(out: Piece[]): void {
    this.run(out, true);
  }

  private emit(out: Piece[], kind: 'content' | 'reasoning', text: string): void {
    if (!text) return;
    const last = out[out.length - 1];
    if (last && last.kind === kind) last.text += text;
    else out.push({ kind, text });
  }

  private tool(out: Piece[], rawName: string, args: string, raw: string): void {
    const name = cleanToolName(rawName);
    if (!this.declared.has(name)) {
      // The model cannot grant itself a tool: the text goes, the call is not made.
      this.repairs.push('tool_call_undeclared');
      return;
    }
    try {
      JSON.parse(args);
    } catch {
      this.repairs.push('tool_call_unparsable');
      this.emit(out, 'content', raw);
      return;
    }
    this.repairs.push('tool_call_in_content');
    out.push({ kind: 'tool', name, arguments: args.trim() });
  }

  /** Emits `text` of `kind` up to a possible partial control token at its end; returns what is held. */
  private emitUntilPartial(out: Piece[], kind: 'content' | 'reasoning', text: string, final: boolean): string {
    const lt = text.lastIndexOf('<');
    if (!final && lt !== -1 && couldBeToken(text.slice(lt))) {
      this.emit(out, kind, text.slice(0, lt));
      return text.slice(lt);
    }
    this.emit(out, kind, text);
    return '';
  }

  /** Reads as far as the buffer allows, one state at a time. */
  private run(out: Piece[], final: boolean): void {
    while (this.step(out, final));
  }

  private step(out: Piece[], final: boolean): boolean {
    switch (this.state) {
      case 'start':
        return this.atStart(out, final);
      case 'text':
        return this.inText(out, final);
      case 'role':
        return this.inRole(out, final);
      case 'header':
        return this.inHeader(out, final);
      case 'analysis':
        return this.inAnalysis(out, final);
      case 'toolargs':
        return this.inToolArguments(out, final);
      case 'plainTool':
        return this.inPlainTool(out, final);
      case 'plainAnalysis':
        return this.inPlainAnalysis(out, final);
    }
  }

  /** The first bytes: a control token, a tool call with its tokens stripped (`commentary to=functions.`), or the analysis channel glued to its text. Returns whether to go on. */
  private atStart(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    if (buf.startsWith('<|')) {
      this.state = 'text';
      return true;
    }
    if (buf.startsWith(PLAIN_TOOL)) {
      this.state = 'plainTool';
      return true;
    }
    if (buf.length > PLAIN_ANALYSIS.length && buf.startsWith(PLAIN_ANALYSIS)) {
      // `analysisUser asks...`: the channel name glued to its text. Prose says `analysis of`, `analysis:`.
      const next = buf[PLAIN_ANALYSIS.length]!;
      if (!/[\s\p{P}\p{Ll}]/u.test(next)) {
        this.buffer = buf.slice(PLAIN_ANALYSIS.length);
        this.repairs.push('analysis_in_content');
        this.state = 'plainAnalysis';
        return true;
      }
      this.state = 'text';
      return true;
    }
    if (!final && (PLAIN_TOOL.startsWith(buf) || PLAIN_ANALYSIS.startsWith(buf))) return false;
    this.state = 'text';
    return true;
  }

  /** Ordinary content, up to the next control token. Returns whether to go on. */
  private inText(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    const at = buf.indexOf('<|');
    if (at === -1) {
      this.buffer = this.emitUntilPartial(out, 'content', buf, final);
      return false;
    }
    this.emit(out, 'content', buf.slice(0, at));
    const token = tokenAt(buf, at);
    if (!token) {
      if (!final && couldBeToken(buf.slice(at))) {
        this.buffer = buf.slice(at);
        return false;
      }
      this.emit(out, 'content', '<|');
      this.buffer = buf.slice(at + 2);
      return true;
    }
    this.buffer = buf.slice(at + token.length);
    if (token === '<|channel|>') {
      this.state = 'header';
      this.header = '';
    } else {
      this.repairs.push('control_token');
      if (token === '<|start|>') this.state = 'role';
    }
    return true;
  }

  /** After `<|start|>`: the role name runs to the next control token. Returns whether to go on. */
  private inRole(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    // `<|start|>assistant`: the role name runs to the next control token.
    const at = buf.indexOf('<|');
    if (at === -1) {
      if (!final && buf.length <= 32) return false;
      this.state = 'text';
      return true;
    }
    this.buffer = buf.slice(at);
    this.state = 'text';
    return true;
  }

  /** After `<|channel|>`: the channel header up to `<|message|>` says what follows (analysis, a tool call, final). Returns whether to go on. */
  private inHeader(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    const at = buf.indexOf('<|message|>');
    if (at === -1) {
      if (!final && buf.length <= MAX_HEADER) return false;
      // Not a channel header after all: what followed `<|channel|>` is text.
      this.repairs.push('control_token');
      this.state = 'text';
      return true;
    }
    const header = buf.slice(0, at).replaceAll('<|constrain|>', ' ').trim();
    this.buffer = buf.slice(at + '<|message|>'.length);
    const recipient = /\bto=(\S+)/.exec(header);
    if (header.startsWith('analysis')) {
      this.repairs.push('analysis_in_content');
      this.state = 'analysis';
    } else if (recipient) {
      this.toolName = recipient[1]!;
      this.toolRaw = '';
      this.state = 'toolargs';
    } else {
      // `final`, or a commentary preamble: ordinary content.
      this.repairs.push('control_token');
      this.state = 'text';
    }
    return true;
  }

  /** The analysis channel: reasoning, up to `<|end|>` or the next channel. Returns whether to go on. */
  private inAnalysis(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    const end = buf.indexOf('<|end|>');
    const next = buf.indexOf('<|channel|>');
    const stop = end === -1 ? next : next === -1 ? end : Math.min(end, next);
    if (stop === -1) {
      this.buffer = this.emitUntilPartial(out, 'reasoning', buf, final);
      if (final) this.state = 'text';
      return false;
    }
    this.emit(out, 'reasoning', buf.slice(0, stop));
    this.buffer = buf.slice(stop === end ? end + '<|end|>'.length : stop);
    this.state = 'text';
    return true;
  }

  /** A tool call's arguments, up to `<|call|>` (or `<|end|>`). Returns whether to go on. */
  private inToolArguments(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    const call = buf.indexOf('<|call|>');
    const endAt = call === -1 ? buf.indexOf('<|end|>') : call;
    if (endAt === -1 && !final) return false;
    const args = endAt === -1 ? buf : buf.slice(0, endAt);
    this.tool(out, this.toolName, args, args);
    this.buffer = endAt === -1 ? '' : buf.slice(endAt + (call === -1 ? '<|end|>'.length : '<|call|>'.length));
    this.state = 'text';
    if (endAt === -1) return false;
    return true;
  }

  /** A tool call whose tokens were stripped, read whole (it is short) and parsed. Returns whether to go on. */
  private inPlainTool(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    if (!final && buf.length <= MAX_PLAIN_TOOL) return false;
    const m = PLAIN_TOOL_FORM.exec(buf);
    this.buffer = '';
    this.state = 'text';
    if (m) this.tool(out, m[1]!, m[2]!, buf);
    else this.emit(out, 'content', buf);
    return false;
  }

  /** `analysis...assistantfinal...` with its tokens stripped: reasoning up to `assistantfinal`. Returns whether to go on. */
  private inPlainAnalysis(out: Piece[], final: boolean): boolean {
    const buf = this.buffer;
    const at = buf.indexOf(PLAIN_FINAL);
    if (at === -1) {
      // Hold only what could still be the start of `assistantfinal`.
      let keep = 0;
      if (!final)
        for (let n = Math.min(PLAIN_FINAL.length - 1, buf.length); n > 0; n--)
          if (PLAIN_FINAL.startsWith(buf.slice(-n))) {
            keep = n;
            break;
          }
      this.emit(out, 'reasoning', buf.slice(0, buf.length - keep));
      this.buffer = buf.slice(buf.length - keep);
      return false;
    }
    this.emit(out, 'reasoning', buf.slice(0, at));
    this.buffer = buf.slice(at + PLAIN_FINAL.length);
    this.state = 'text';
    return true;
  }
}

/** Control tokens removed from a reasoning field streamed in pieces, holding back a partial token. */
export class TokenStripper {
  private held = '';
  removed = 0;

  feed(text: string, final = false): string {
    let buf = this.held + text;
    this.held = '';
    if (buf.indexOf('<') === -1) return buf;
    let out = '';
    for (;;) {
      const at = buf.indexOf('<|');
      if (at === -1) break;
      const token = tokenAt(buf, at);
      if (token) {
        out += buf.slice(0, at);
        buf = buf.slice(at + token.length);
        this.removed++;
        continue;
      }
      if (!final && couldBeToken(buf.slice(at))) {
        this.held = buf.slice(at);
        return out + buf.slice(0, at);
      }
      out += buf.slice(0, at + 2);
      buf = buf.slice(at + 2);
    }
    const lt = buf.lastIndexOf('<');
    if (!final && lt !== -1 && couldBeToken(buf.slice(lt))) {
      this.held = buf.slice(lt);
      return out + buf.slice(0, lt);
    }
    return out + buf;
  }

  flush(): string {
    return this.feed('', true);
  }
}
