import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

export interface Server {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
  /** CPU time (user + system) the process used so far, in microseconds, from /proc. */
  cpuMicros(): number;
  /** Live heap after a collection, in bytes (targets started with heap-probe.js preloaded). */
  heapUsed(): Promise<number>;
}

const CLK_TCK = 100;

export function cpuMicrosOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1e6;
}

/** Starts `node script args` pinned to `cpu` (taskset) and waits for its "listening on URL" line. */
export async function startPinned(
  cpu: number,
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
  ready: RegExp = /listening on (http:\/\/[^\s]+)/,
  quiet = false,
  nodeArgs: string[] = [],
): Promise<Server> {
  const child = spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeArgs, script, ...args], {
    stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'],
    env: { ...process.env, ...env },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not start: ${out}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!.replace('localhost', '127.0.0.1'));
      }
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out}`)));
  });
  return {
    url,
    child,
    cpuMicros: () => cpuMicrosOf(child.pid!),
    heapUsed: () =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${script}: no heap-used answer (preload heap-probe.js)`)), 10_000);
        const onData = (d: Buffer) => {
          const m = /heap-used (\d+)/.exec(d.toString());
          if (!m) return;
          clearTimeout(timer);
          child.stdout.off('data', onData);
          resolve(Number(m[1]));
        };
        child.stdout.on('data', onData);
        child.kill('SIGUSR2');
      }),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  requests: number;
}

export async function load(
  url: string,
  body: string,
  options: { connections: number; seconds: number; headers?: Record<string, string> },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...options.headers },
    connections: options.connections,
    duration: options.seconds,
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    requests: result.requests.total,
  };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Pins this process (the load generator) to `cpu`, away from the server under test. */
export function pinSelf(cpu: number): void {
  spawn('taskset', ['-cp', String(cpu), String(process.pid)], { stdio: 'ignore' });
}
