import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.js';
import { percentile } from './latency.js';

/**
 * `pnpm bench:resume`: what resuming a stream costs. Two simulator processes paced as
 * `pnpm start` paces them (TTFT 80 ms, 8 ms a token) behind the example gateway, twice: resumption
 * on (the default) and `RESUME=off`.
 *  - The stall at a resumption: streams cut at a random token (the replica resets the connection);
 *    the longest gap between two chunks the caller reads, against the same stream's TTFT.
 *  - What asking for token ids costs when nothing fails: gateway CPU per stream, on and off, in
 *    alternating rounds (a ratio from one run; the machine is shared).
 * `BENCH_STREAMS` (40) cut streams, `BENCH_CLEAN` (200) clean streams per target. Loopback only.
 */
const model = 'openai/gpt-oss-20b';
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const main = here('../../../examples/express-gateway/dist/main.js');
const simCli = here('../../../packages/vllm-sim/dist/cli.js');
const KEY = 'sk-tera-bench-resume';
const CUT = Number(process.env.BENCH_STREAMS ?? 40);
const CLEAN = Number(process.env.BENCH_CLEAN ?? 200);

function waitFor(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = pattern.exec(out);
      if (!m) return;
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve(m[1] ?? '');
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
  });
}

async function startSim(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [simCli, '--port', '0', '--ttft-ms', '80', '--itl-ms', '8'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return { url: await waitFor(child, /listening on (http:\/\/\S+)/), child };
}

async function startGateway(upstreams: string[], env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'tera-resume-'));
  writeFileSync(join(dir, 'keys.json'), JSON.stringify([{ key: KEY, id: 'bench', concurrency: 64, tokensPerSecond: 1e9 }]));
  const port = await freePort();
  const child = spawn(process.execPath, [main], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      PORT: String(port),
      UPSTREAM_URLS: upstreams.join(','),
      GATEWAY_KEYS: join(dir, 'keys.json'),
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  // Its start-up lines are info and LOG_LEVEL is warn: readiness is the signal.
  child.stdout.resume();
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`${url}/health/ready`).catch(() => undefined))?.ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, child };
}

const cpuOf = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

/** One stream read chunk by chunk: its TTFT and its longest gap between chunks, in ms. */
async function stream(url: string, seed: number): Promise<{ ttft: number; gap: number; ok: boolean }> {
  const started = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({
      model,
      seed,
      stream: true,
      max_tokens: 200,
      messages: [{ role: 'user', content: `Tell me about the sea, take ${seed}` }],
    }),
  });
  const reader = res.body!.getReader();
  let ttft = 0;
  let last = 0;
  let gap = 0;
  let text = '';
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    const now = performance.now();
    text += new TextDecoder().decode(r.value);
    if (!ttft && text.includes('"reasoning"')) ttft = now - started;
    else if (ttft) gap = Math.max(gap, now - last);
    last = now;
  }
  return { ttft, gap, ok: text.includes('[DONE]') && !text.includes('"error"') };
}

const fmt = (n: number) => `${n.toFixed(1)} ms`;

async function main_(): Promise<void> {
  const sims = await Promise.all([startSim(), startSim()]);
  const on = await startGateway(
    sims.map((s) => s.url),
    {},
  );
  const off = await startGateway(
    sims.map((s) => s.url),
    { RESUME: 'off' },
  );
  const configure = (config: unknown) =>
    Promise.all(sims.map((s) => fetch(`${s.url}/sim/config`, { method: 'POST', body: JSON.stringify(config) })));
  try {
    for (let i = 0; i < 10; i++) await Promise.all([stream(on.url, i), stream(off.url, i)]);
    // The stall at a resumption, against the same stream's TTFT.
    const stalls: number[] = [];
    const ttfts: number[] = [];
    let broken = 0;
    for (let i = 0; i < CUT; i++) {
      await configure({ dieAfterTokens: { tokens: 10 + Math.floor(Math.random() * 80) } });
      const r = await stream(on.url, 100 + i);
      await configure({ dieAfterTokens: null });
      if (!r.ok) broken++;
      stalls.push(r.gap);
      ttfts.push(r.ttft);
    }
    // Clean streams, alternating targets: gateway CPU per stream with and without token ids.
    const cpu = { on: 0, off: 0 };
    for (let round = 0; round < 4; round++) {
      for (const [name, target] of [
        ['on', on],
        ['off', off],
      ] as const) {
        const before = cpuOf(target.child.pid!);
        for (let i = 0; i < CLEAN / 4; i += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => stream(target.url, 1000 + i + j)));
        cpu[name] += cpuOf(target.child.pid!) - before;
      }
    }
    const p = (xs: number[], q: number) => percentile(xs, q);
    console.log(`resumption stall (longest gap between chunks), ${CUT} streams cut at a random token, ${broken} broken:`);
    console.log(`  stall p50 ${fmt(p(stalls, 50))}, p95 ${fmt(p(stalls, 95))}`);
    console.log(`  the same streams' TTFT p50 ${fmt(p(ttfts, 50))}, p95 ${fmt(p(ttfts, 95))}`);
    console.log(`  stall / TTFT at p50: ${(p(stalls, 50) / p(ttfts, 50)).toFixed(2)}x`);
    console.log(
      `gateway CPU per clean stream (200 tokens): resume on ${((cpu.on / CLEAN) * 1e6).toFixed(0)} µs, off ${((cpu.off / CLEAN) * 1e6).toFixed(0)} µs, ratio ${(cpu.on / cpu.off).toFixed(2)}x`,
    );
  } finally {
    for (const c of [on.child, off.child, ...sims.map((s) => s.child)]) c.kill('SIGKILL');
  }
}

await main_();
