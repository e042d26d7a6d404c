import type { IncomingMessage, ServerResponse } from 'node:http';
import { FAULTS, type Fault } from './options.js';
import type { Sim } from './sim.js';

/** Messages of openai-harmony's parser as vLLM relays them (vllm#22515, #22519, #23567; openai/harmony#38). */
export const HARMONY_ERRORS = [
  'openai_harmony.HarmonyError: Unexpected token 200002 while expecting start token 200006',
  'openai_harmony.HarmonyError: unexpected tokens remaining in message header: Some("to=functions.get_weather<|channel|>commentary json")',
  'openai_harmony.HarmonyError: Unknown role: assistantanalysis',
  'openai_harmony.HarmonyError: channel marker present but no channel value found in header',
];

/**
 * The fault this request meets: `x-sim-fault`, else one drawn from the configured rates. With
 * `x-sim-fault-times: N` (or `--fault-times N`) only the first N attempts of one gateway request
 * (same `x-request-id`) meet it, as a retry after a sampling failure would see. Undefined when
 * the header names no known fault (the request is then answered 400).
 */
export function pickFault(sim: Sim, req: IncomingMessage): { fault: Fault | undefined } | undefined {
  const state = sim.engine.state;
  const headerFault = req.headers['x-sim-fault'];
  let fault = typeof headerFault === 'string' ? (headerFault as Fault) : undefined;
  if (fault !== undefined && !FAULTS.includes(fault)) return undefined;
  const requestId = req.headers['x-request-id'];
  if (fault === undefined && state.failRate > 0 && Math.random() < state.failRate) fault = '500';
  if (fault === undefined)
    for (const [name, rate] of Object.entries(state.faultRates) as Array<[Fault, number]>)
      if (rate > 0 && Math.random() < rate) {
        fault = name;
        break;
      }
  const times = Number(req.headers['x-sim-fault-times'] ?? state.faultTimes);
  if (fault !== undefined && Number.isFinite(times) && typeof requestId === 'string') {
    const seen = sim.faultsSeen.get(requestId) ?? 0;
    if (sim.faultsSeen.size > 10_000) sim.faultsSeen.clear();
    sim.faultsSeen.set(requestId, seen + 1);
    if (seen >= times) fault = undefined;
  }
  return { fault };
}

/** Answers the faults that strike before any generation; true when it answered (or cut the connection). */
export function answerEarlyFault(sim: Sim, req: IncomingMessage, res: ServerResponse, fault: Fault | undefined): boolean {
  switch (fault) {
    case 'reset-before-headers':
      req.socket.destroy();
      return true;
    case '500':
      sim.error(res, 500, 'InternalServerError', 'EngineCore encountered an issue. See stack trace (above) for the root cause.');
      return true;
    case '503':
      sim.error(res, 503, 'ServiceUnavailableError', 'The server is temporarily unable to serve requests.');
      return true;
    case 'harmony-500':
      sim.error(res, 500, 'InternalServerError', HARMONY_ERRORS[0]!);
      return true;
    case 'harmony-400':
      sim.error(res, 400, 'BadRequestError', HARMONY_ERRORS[1]!);
      return true;
    case 'harmony-200':
      sim.json(res, 200, JSON.stringify({ error: { message: HARMONY_ERRORS[2], type: 'InternalServerError', param: null, code: 500 } }));
      return true;
    case 'request-500':
      sim.error(
        res,
        500,
        'InternalServerError',
        'ValueError: could not render the prompt (Traceback in /opt/vllm/entrypoints/openai/serving_chat.py; peer 10.0.3.7:8000; key sk-internal-0000)',
      );
      return true;
    default:
      return false;
  }
}
