#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { startSimulator } from './server.js';
import { FAULTS, TOOL_CALL_QUIRKS, type Fault, type ReasoningField, type SimulatorOptions, type ToolCallQuirk } from './options.js';

const usage = `Usage: vllm-sim [--port 8001] [--host 127.0.0.1] [--model openai/gpt-oss-20b]
  [--reasoning-field reasoning|reasoning_content|both] [--ttft-ms N] [--itl-ms N] [--cold-start-ms N]
  [--fail-rate 0..1] [--tool-call-quirk ${TOOL_CALL_QUIRKS.join('|')}]... [--error-format nested|flat]
  [--max-model-len N] [--version X.Y.Z] [--kv-cache-tokens N] [--prefill-us-per-token N]
  [--max-num-seqs N] [--enable-prompt-tokens-details] [--fault NAME[:RATE]]... [--fault-times N]
  faults: ${FAULTS.join(', ')} (RATE: share of chat requests, default 1;
  --fault-times N: only the first N attempts of each gateway request meet one)`;

function fail(message: string): never {
  process.stderr.write(`vllm-sim: ${message}\n${usage}\n`);
  process.exit(2);
}

function number(name: string, value: string | undefined, min = 0, max = Infinity): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number in [${min}, ${max}], got '${value}'`);
  return n;
}

let parsed;
try {
  parsed = parseArgs({
    // `pnpm sim -- --port 8001` passes the `--` through.
    args: process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--')),
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      model: { type: 'string' },
      'reasoning-field': { type: 'string' },
      'ttft-ms': { type: 'string' },
      'itl-ms': { type: 'string' },
      'cold-start-ms': { type: 'string' },
      'fail-rate': { type: 'string' },
      'tool-call-quirk': { type: 'string', multiple: true },
      fault: { type: 'string', multiple: true },
      'fault-times': { type: 'string' },
      'error-format': { type: 'string' },
      'max-model-len': { type: 'string' },
      'kv-cache-tokens': { type: 'string' },
      'prefill-us-per-token': { type: 'string' },
      'max-num-seqs': { type: 'string' },
      'enable-prompt-tokens-details': { type: 'boolean' },
      version: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
} catch (err) {
  fail((err as Error).message);
}
const v = parsed.values;
if (v.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const reasoningField = v['reasoning-field'];
if (reasoningField !== undefined && !['reasoning', 'reasoning_content', 'both'].includes(reasoningField)) {
  fail(`--reasoning-field must be reasoning, reasoning_content or both, got '${reasoningField}'`);
}
const quirks = (v['tool-call-quirk'] ?? []).flatMap((q) => q.split(','));
for (const q of quirks) if (!TOOL_CALL_QUIRKS.includes(q as ToolCallQuirk)) fail(`unknown --tool-call-quirk '${q}'`);
const errorFormat = v['error-format'];
if (errorFormat !== undefined && errorFormat !== 'nested' && errorFormat !== 'flat') fail(`--error-format must be nested or flat`);

const options: SimulatorOptions = {
  port: number('port', v.port, 0, 65535) ?? 8001,
  host: v.host ?? '127.0.0.1',
  toolCallQuirks: quirks as ToolCallQuirk[],
};
if (v.model) options.model = v.model;
if (reasoningField) options.reasoningField = reasoningField as ReasoningField;
if (errorFormat) options.errorFormat = errorFormat;
if (v.version) options.version = v.version;
const numeric = {
  ttftMs: 'ttft-ms',
  itlMs: 'itl-ms',
  coldStartMs: 'cold-start-ms',
  maxModelLen: 'max-model-len',
  kvCacheTokens: 'kv-cache-tokens',
  prefillUsPerToken: 'prefill-us-per-token',
  maxNumSeqs: 'max-num-seqs',
} as const;
if (v['enable-prompt-tokens-details']) options.enablePromptTokensDetails = true;
for (const [key, flag] of Object.entries(numeric)) {
  const n = number(flag, v[flag]);
  if (n !== undefined) options[key as keyof typeof numeric] = n;
}
const failRate = number('fail-rate', v['fail-rate'], 0, 1);
if (failRate !== undefined) options.failRate = failRate;
for (const spec of (v.fault ?? []).flatMap((f) => f.split(','))) {
  const [name, rate = '1'] = spec.split(':');
  if (!FAULTS.includes(name as Fault)) fail(`unknown --fault '${name}'; one of ${FAULTS.join(', ')}`);
  const share = number('fault', rate, 0, 1)!;
  (options.faultRates ??= {})[name as Fault] = share;
}
const faultTimes = number('fault-times', v['fault-times'], 0);
if (faultTimes !== undefined) options.faultTimes = faultTimes;

const sim = await startSimulator(options);
process.stdout.write(`vllm-sim listening on ${sim.url}\n`);
const stop = () => void sim.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// Started with an IPC channel (spawnSimulator): gone with the process that started it.
if (process.send) process.once('disconnect', stop);
