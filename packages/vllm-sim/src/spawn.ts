import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export interface SimulatorProcess {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no `/v1`). */
  readonly url: string;
  readonly child: ChildProcess;
  /** Stops the process (SIGTERM, then SIGKILL after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

const cli = fileURLToPath(new URL('./cli.js', import.meta.url));

/**
 * A simulator in a process of its own, so a prompt it counts or a stream it paces never holds the
 * event loop of the process that started it (the gateway of `pnpm start`). `args` are the CLI's
 * flags (`--itl-ms 8`); it listens on a free loopback port unless `--port` says otherwise, and
 * exits when its parent does (the IPC channel closes).
 */
export async function spawnSimulator(args: readonly string[] = [], timeoutMs = 20_000): Promise<SimulatorProcess> {
  const child = fork(cli, ['--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`vllm-sim did not start within ${timeoutMs} ms: ${out}`)), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      // Later output is not ours to read, but must not fill the pipe.
      child.stdout!.resume();
      resolve(match[1]!);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`vllm-sim exited with code ${code} before listening: ${out.trim()}`));
    });
  });
  return {
    url,
    child,
    async close(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
