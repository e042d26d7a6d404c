import { UpstreamFault } from '@tera-gw/circuit-breaker';
import { classifyUpstreamError, type ModelOutputFailure, type RequestFailure, type TeraError } from '@tera-gw/core';

/** Core's verdict on an upstream error, with a replica's own failure as the fault its breaker counts. */
export type UpstreamVerdict =
  | { owner: 'model'; failure: ModelOutputFailure }
  | { owner: 'request'; failure: RequestFailure }
  | { owner: 'replica'; fault: UpstreamFault }
  | { owner: 'caller'; error: TeraError };

/** An error answer (any status, a 200 whose body is an error object included), or an error event in a stream (`status` 0). */
export function classify(status: number, text: string): UpstreamVerdict {
  const verdict = classifyUpstreamError(status, text);
  if (verdict.owner !== 'replica') return verdict;
  return { owner: 'replica', fault: new UpstreamFault(verdict.replica.kind, verdict.replica.message, verdict.replica.status) };
}
