import type { ServerResponse } from 'node:http';
import type { Engine } from './engine.js';
import type { ReasoningField, SimulatorOptions, ToolCallQuirk } from './options.js';

/** What every route of one simulator shares. */
export interface Sim {
  readonly model: string;
  readonly maxModelLen: number;
  readonly reasoningField: ReasoningField;
  readonly defaultQuirks: ReadonlySet<ToolCallQuirk>;
  readonly options: SimulatorOptions;
  readonly engine: Engine;
  /** Attempts seen per gateway request (`x-request-id`), for `--fault-times`. */
  readonly faultsSeen: Map<string, number>;
  json(res: ServerResponse, status: number, body: string): void;
  /** An error in vLLM's shape: nested (`{"error":{...}}`), or flat as older releases sent it. */
  error(res: ServerResponse, status: number, type: string, message: string, param?: string | null): void;
}

export function sendJSON(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function vllmError(flat: boolean) {
  return (res: ServerResponse, status: number, type: string, message: string, param: string | null = null): void => {
    const fields = { message, type, param, code: status };
    sendJSON(res, status, JSON.stringify(flat ? { object: 'error', ...fields } : { error: fields }));
  };
}
