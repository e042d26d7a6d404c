import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

export { freePort };

const simCli = fileURLToPath(new URL('../../packages/vllm-sim/dist/cli.js', import.meta.url));

export interface SimProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Sum of every sample whose line starts with `name` (labels included in the prefix if given). */
  metric(name: string): Promise<number>;
  configure(config: Record<string, unknown>): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

async function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms: ${out}`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${out}`));
    });
  });
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** A real simulator process on loopback. */
export async function spawnSim(args: string[] = [], port = 0): Promise<SimProcess> {
  const child = spawn(process.execPath, [simCli, '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = (await waitForLine(child, /listening on (http:\/\/\S+)/, 'vllm-sim'))[1]!;
  return {
    url,
    port: Number(new URL(url).port),
    child,
    async metric(name) {
      const text = await (await fetch(`${url}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').at(-1));
      return sum;
    },
    async configure(config) {
      await fetch(`${url}/sim/config`, { method: 'POST', body: JSON.stringify(config) });
    },
    kill: (signal = 'SIGKILL') => stopChild(child, signal),
  };
}

export interface RedisProcess {
  url: string;
  stop(): Promise<void>;
}

/**
 * A throw-away redis-server on loopback (no persistence). Without redis-server the Redis
 * suites are skipped locally with a message, and fail in CI: they never skip silently there.
 */
export function redisAvailable(): boolean {
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found && process.env.CI)
    throw new Error('redis-server is not installed: .ci/run installs it (apt-get install redis-server); the Redis suites must run in CI');
  if (!found) console.warn('redis-server not found: skipping the Redis suites (apt-get install redis-server to run them)');
  return found;
}

export async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await waitForLine(child, /Ready to accept connections/, 'redis-server');
  return { url: `redis://127.0.0.1:${port}`, stop: () => stopChild(child, 'SIGTERM') };
}

/** The JSON log lines (pino's) in a process's output; other lines (the hints on stderr) are left out. */
export function logLines(output: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut by the chunk boundary of the output read so far: read again later.
    }
  }
  return lines;
}

const exampleMain = fileURLToPath(new URL('../../examples/express-gateway/dist/main.js', import.meta.url));

/** The example gateway as its own process (what `pnpm start` runs). */
export async function spawnGateway(
  env: Record<string, string>,
): Promise<{ url: string; pid: number; output: () => string; stop(signal?: NodeJS.Signals): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [exampleMain], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORT: String(port), ...env },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  await waitForLine(child, /"msg":"gateway listening"/, 'express-gateway');
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    output: () => output,
    stop: (signal = 'SIGTERM') => stopChild(child, signal),
  };
}
