import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.js';
import { percentile } from './latency.js';

/**
 * The hostile-tenant run, from outside: `pnpm start` (the example gateway, its embedded simulators)
 * and the same gateway with pass-through on, each in its own process. A bystander tenant sends
 * small chat requests in a loop while a hostile tenant (2 requests in flight, as its key allows)
 * sends one payload family at a time, each bounded in count and time. Per family: the
 * bystander's p50 and worst latency, the gateway process's CPU, and its RSS growth.
 *
 * `BENCH_GATEWAY_MAIN` points at another build's `examples/express-gateway/dist/main.js` (the
 * "before" of the README's table), `BENCH_FAMILIES` picks families by a part of their names,
 * `BENCH_NODE_ARGS` adds flags to the gateway's node, `BENCH_TARGETS=start` or `passthrough` runs one. Traffic goes to 127.0.0.1 only.
 */
const model = 'openai/gpt-oss-20b';
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const main = process.env.BENCH_GATEWAY_MAIN ?? here('../../../examples/express-gateway/dist/main.js');
const FAMILY_LIMIT_MS = Number(process.env.BENCH_FAMILY_MS ?? 20_000);
const only = process.env.BENCH_FAMILIES?.split(',');
/** Flags for the gateway's node (`--cpu-prof --cpu-prof-dir=...` to profile it: NODE_OPTIONS refuses those). */
const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const keys = {
  hostile: { key: 'sk-tera-bench-hostile', id: 'hostile', concurrency: 2, tokensPerSecond: 1e9 },
  broke: { key: 'sk-tera-bench-broke', id: 'broke', concurrency: 2, tokensPerSecond: 1e9, budget: { usd: 0.000001, period: 'total' } },
  bystander: { key: 'sk-tera-bench-bystander', id: 'bystander', concurrency: 4, tokensPerSecond: 1e9 },
};

interface Target {
  name: string;
  url: string;
  child: ChildProcess;
}

async function startTarget(name: string, env: Record<string, string>): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'tera-hostile-'));
  writeFileSync(join(dir, 'keys.json'), JSON.stringify(Object.values(keys).map((k) => ({ ...k, models: '*' }))));
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, main], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, PORT: String(port), GATEWAY_KEYS: join(dir, 'keys.json'), SIM_TTFT_MS: '20', SIM_ITL_MS: '1', ...env },
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (!out.includes('gateway listening')) return;
      // The access lines that follow are not read, but must not fill the pipe.
      child.stdout.off('data', onData);
      child.stdout.resume();
      resolve();
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}: ${out}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`${url}/health`).catch(() => undefined))?.ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { name, url, child };
}

/** CPU seconds (user + system) and RSS bytes of a process, from /proc. */
function usage(pid: number): { cpu: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  return { cpu: ticks / 100, rss };
}

const post = (url: string, key: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  }).then(
    async (res) => {
      await res.arrayBuffer();
      return res.status;
    },
    () => 0,
  );

/** Runs `count` calls of `send`, `parallel` at a time, within the family's time limit. */
async function flood(count: number, parallel: number, send: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const end = performance.now() + FAMILY_LIMIT_MS;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < count && performance.now() < end; i = next++) await send(i);
    }),
  );
}

function heavyPattern(from: number): string {
  const parts: string[] = [];
  for (let n = from; parts.join('|').length < 980; n--) parts.push(`\\p{L}{${n}}`);
  return `(?:${parts.join('|')})`;
}
const patterns = (n: number) => ({
  type: 'object',
  properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, { type: 'string', pattern: heavyPattern(999 - i) }])),
});
const slashes = `!${'/\r\n'.repeat(66_000)}`;
const words = Array.from({ length: 30_000 }, (_, i) => `word${i % 997}`).join(' ');

/** A raw request with `Expect: 100-continue` and its body sent only after the interim answer. */
function expectContinue(url: string, key: string, body: string): Promise<void> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('connect', () =>
      socket.write(
        `POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`,
      ),
    );
    let sent = false;
    socket.on('data', (d: Buffer) => {
      if (!sent && d.toString().startsWith('HTTP/1.1 100')) {
        sent = true;
        socket.write(body);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('error', () => undefined);
  });
}

/** A request on a raw path, for paths fetch would normalise (`/health/%`). */
function rawRequest(url: string, method: string, path: string): Promise<void> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, method, path }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', () => resolve());
    req.end();
  });
}

type Family = [name: string, run: (url: string) => Promise<void>];
const H = keys.hostile.key;

const families: Family[] = [
  [
    '60 patterns of ~1,000 characters, chat',
    (u) =>
      flood(4, 2, () =>
        post(`${u}/v1/chat/completions`, H, {
          model,
          messages: [{ role: 'user', content: 'hi' }],
          tools: [{ type: 'function', function: { name: 'f', parameters: patterns(60) } }],
        }),
      ),
  ],
  [
    '150 patterns, Responses',
    (u) =>
      flood(2, 2, () =>
        post(`${u}/v1/responses`, H, { model, input: 'hi', tools: [{ type: 'function', name: 'f', parameters: patterns(150) }] }),
      ),
  ],
  [
    '150 patterns, input_tokens',
    (u) =>
      flood(2, 2, () =>
        post(`${u}/v1/responses/input_tokens`, H, {
          model,
          input: 'hi',
          tools: [{ type: 'function', name: 'f', parameters: patterns(150) }],
        }),
      ),
  ],
  [
    "'!' then 200 KB of '/', CR, LF, input_tokens x8",
    (u) => flood(8, 8, () => post(`${u}/v1/responses/input_tokens`, H, { model, input: slashes })),
  ],
  [
    "'!' then 200 KB of '/', CR, LF, chat x8",
    (u) => flood(8, 8, () => post(`${u}/v1/chat/completions`, H, { model, messages: [{ role: 'user', content: slashes }], max_tokens: 5 })),
  ],
  [
    '8 parallel prompts of 200 KB of words',
    (u) => flood(8, 8, () => post(`${u}/v1/chat/completions`, H, { model, messages: [{ role: 'user', content: words }], max_tokens: 5 })),
  ],
  [
    'one message of 200,001 characters',
    (u) =>
      flood(2, 1, () =>
        post(`${u}/v1/chat/completions`, H, { model, messages: [{ role: 'user', content: 'a'.repeat(200_001) }], max_tokens: 5 }),
      ),
  ],
  [
    'a 142 KB stored item referenced twice, x2 parallel',
    async (u) => {
      await post(`${u}/v1/responses`, H, {
        model,
        input: [{ id: 'msg_bench_big', type: 'message', role: 'user', content: 'history '.repeat(17_800) }],
        max_output_tokens: 5,
      });
      await flood(4, 2, () =>
        post(`${u}/v1/responses`, H, {
          model,
          input: [
            { type: 'item_reference', id: 'msg_bench_big' },
            { type: 'item_reference', id: 'msg_bench_big' },
          ],
          max_output_tokens: 5,
        }),
      );
    },
  ],
  [
    '20 stored responses of 3.9 MB',
    (u) => flood(20, 2, (i) => post(`${u}/v1/responses`, H, { model, input: `${i} ${' '.repeat(3_900_000)}`, max_output_tokens: 5 })),
  ],
  [
    '8 loops of GET on its own 4 MB response',
    async (u) => {
      const res = await fetch(`${u}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${H}` },
        body: JSON.stringify({ model, input: ' '.repeat(3_900_000), max_output_tokens: 5 }),
      });
      const id = ((await res.json()) as { id?: string }).id ?? 'resp_missing';
      await flood(80, 8, () =>
        fetch(`${u}/v1/responses/${id}`, { headers: { authorization: `Bearer ${H}` } }).then(
          (r) => r.arrayBuffer(),
          () => undefined,
        ),
      );
    },
  ],
  [
    'an unsatisfiable strict json_schema',
    (u) =>
      flood(6, 2, () =>
        post(`${u}/v1/chat/completions`, H, {
          model,
          messages: [{ role: 'user', content: 'a name' }],
          max_tokens: 50,
          response_format: {
            type: 'json_schema',
            json_schema: { name: 'n', strict: true, schema: { type: 'string', minLength: 5, maxLength: 2 } },
          },
        }),
      ),
  ],
  [
    'GET /, POST /health, OPTIONS /, /health/%',
    (u) => flood(40, 2, (i) => rawRequest(u, ['GET', 'POST', 'OPTIONS', 'GET'][i % 4]!, ['/', '/health', '/', '/health/%'][i % 4]!)),
  ],
];

const passthroughFamilies: Family[] = [
  [
    'passthrough: text/plain bodies',
    (u) => flood(200, 2, () => post(`${u}/v1/tokenize`, H, JSON.stringify({ model, prompt: 'hi' }), { 'content-type': 'text/plain' })),
  ],
  [
    'passthrough: Expect: 100-continue and no Content-Type',
    (u) =>
      flood(20, 2, (i) =>
        i % 2
          ? expectContinue(u, H, JSON.stringify({ model, prompt: 'hi' }))
          : fetch(`${u}/v1/tokenize`, {
              method: 'POST',
              headers: { authorization: `Bearer ${H}` },
              body: new Blob(['{"prompt":"hi"}']),
            }).then(
              () => undefined,
              () => undefined,
            ),
      ),
  ],
  [
    'passthrough: Content-Encoding br, 4 MB',
    (u) => flood(4, 2, () => post(`${u}/v1/tokenize`, H, Buffer.alloc(4_000_000, 7), { 'content-encoding': 'br' })),
  ],
  [
    'passthrough: completions, spent budget, max_tokens 1,000,000',
    (u) => flood(20, 2, () => post(`${u}/v1/completions`, keys.broke.key, { model, prompt: 'hi', max_tokens: 1_000_000 })),
  ],
  ['passthrough: detokenize of garbage ids', (u) => flood(20, 2, () => post(`${u}/v1/detokenize`, H, { model, tokens: [-1, 99_999_999] }))],
];

interface Row {
  family: string;
  hostile: number;
  p50: number;
  max: number;
  cpuMs: number;
  rssMB: number;
}

async function measure(target: Target, family: Family, baseRss: number): Promise<Row> {
  const latencies: number[] = [];
  let running = true;
  const bystander = (async () => {
    for (let i = 0; running; i++) {
      const started = performance.now();
      await post(`${target.url}/v1/chat/completions`, keys.bystander.key, {
        model,
        messages: [{ role: 'user', content: `small ${i}` }],
        max_tokens: 5,
      });
      latencies.push(performance.now() - started);
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const before = usage(target.child.pid!);
  const started = performance.now();
  await family[1](target.url);
  const hostileMs = performance.now() - started;
  // What the family left behind (a queue, a collection) still lands on the bystander.
  await new Promise((r) => setTimeout(r, 500));
  const after = usage(target.child.pid!);
  running = false;
  await bystander;
  return {
    family: family[0],
    hostile: hostileMs,
    p50: percentile(latencies, 50),
    max: Math.max(...latencies),
    cpuMs: (after.cpu - before.cpu) * 1000,
    rssMB: (after.rss - baseRss) / 1e6,
  };
}

async function run(target: Target, list: Family[]): Promise<Row[]> {
  const rows: Row[] = [];
  // Idle: the bystander alone.
  const base = usage(target.child.pid!).rss;
  rows.push(await measure(target, ['(idle: the bystander alone)', () => new Promise((r) => setTimeout(r, 3000))], base));
  for (const family of list) {
    if (only && !only.some((o) => family[0].includes(o))) continue;
    rows.push(await measure(target, family, base));
    process.stdout.write('.');
  }
  process.stdout.write('\n');
  return rows;
}

function print(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  console.log('| family | hostile run | bystander p50 | bystander max | gateway CPU | RSS growth |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows)
    console.log(
      `| ${r.family} | ${(r.hostile / 1000).toFixed(1)} s | ${r.p50.toFixed(0)} ms | ${r.max.toFixed(0)} ms | ${r.cpuMs.toFixed(0)} ms | ${r.rssMB.toFixed(0)} MB |`,
    );
  const worst = rows.slice(1).reduce((a, b) => (b.max > a.max ? b : a), rows[0]!);
  const rss = Math.max(...rows.map((r) => r.rssMB));
  console.log(
    `worst bystander latency ${worst.max.toFixed(0)} ms (${worst.family}); largest RSS growth ${rss.toFixed(0)} MB; targets < 300 ms, < 300 MB`,
  );
}

const targets = process.env.BENCH_TARGETS?.split(',') ?? ['start', 'passthrough'];
if (targets.includes('start')) {
  const start = await startTarget('pnpm start', {});
  try {
    print(`pnpm start (${main})`, await run(start, families));
  } finally {
    start.child.kill('SIGTERM');
    await once(start.child, 'exit');
  }
}
if (targets.includes('passthrough')) {
  const passthroughTarget = await startTarget('passthrough mount', { PASSTHROUGH: '/tokenize,/detokenize,/v1/completions' });
  try {
    print('the same gateway with PASSTHROUGH=/tokenize,/detokenize,/v1/completions', await run(passthroughTarget, passthroughFamilies));
  } finally {
    passthroughTarget.child.kill('SIGTERM');
    await once(passthroughTarget.child, 'exit');
  }
}
