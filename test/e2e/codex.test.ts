import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLines, spawnGateway } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/**
 * The README's Codex line, run as a new user runs it: `pnpm start` with no configuration (its
 * embedded simulators), then `codex exec` in a directory that is not a git repository. Codex must
 * run a shell command the model asked for and hand its output back through the gateway.
 */
const codex = fileURLToPath(new URL('../node_modules/.bin/codex', import.meta.url));
let gw: Awaited<ReturnType<typeof spawnGateway>>;
let key: string;

beforeAll(async () => {
  gw = await spawnGateway({ UPSTREAM_URLS: '', GATEWAY_KEYS: '' });
  await until(() => gw.output().includes('development API key'), 10_000, 'the development key');
  key = /development API key \(this run only\): (\S+)/.exec(gw.output())![1]!;
  await until(async () => (await fetch(`${gw.url}/health/ready`)).ok, 20_000, 'a ready gateway');
});
afterAll(async () => {
  await gw?.stop();
});

interface CodexEvent {
  type: string;
  item?: { type: string; command?: string; aggregated_output?: string; exit_code?: number | null; text?: string };
}

describe('codex exec against pnpm start', () => {
  it('runs ls through the gateway and answers with its output', { timeout: 120_000 }, async () => {
    const root = mkdtempSync(join(tmpdir(), 'tera-codex-'));
    const work = join(root, 'project');
    mkdirSync(work);
    mkdirSync(join(root, 'home'));
    writeFileSync(join(work, 'tera-codex-marker.txt'), 'hello');
    const child = spawn(
      codex,
      [
        'exec',
        '--json',
        '--skip-git-repo-check',
        // The command runs unsandboxed in the temporary directory: CI machines may lack user namespaces for bubblewrap.
        '--sandbox',
        'danger-full-access',
        '-m',
        'openai/gpt-oss-20b',
        '-c',
        'model_provider=tera',
        '-c',
        'model_providers.tera.name="tera"',
        '-c',
        `model_providers.tera.base_url="${gw.url}/v1"`,
        '-c',
        'model_providers.tera.env_key="TERA_API_KEY"',
        '-c',
        'model_providers.tera.wire_api="responses"',
        'List the files here',
      ],
      { cwd: work, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CODEX_HOME: join(root, 'home'), TERA_API_KEY: key } },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    expect(code, err).toBe(0);

    const events = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as CodexEvent);
    const command = events.find((e) => e.type === 'item.completed' && e.item?.type === 'command_execution')?.item;
    expect(command?.command).toMatch(/\bls$/);
    expect(command?.exit_code).toBe(0);
    expect(command?.aggregated_output).toBe('tera-codex-marker.txt\n');
    const answer = events.find((e) => e.type === 'item.completed' && e.item?.type === 'agent_message')?.item;
    expect(answer?.text).toContain('tera-codex-marker.txt');
    expect(events.at(-1)?.type).toBe('turn.completed');

    // Both turns (the call, then the answer with its result) went through the gateway as Responses requests.
    const turns = logLines(gw.output()).filter((l) => l.msg === 'request' && l.endpoint === 'responses');
    expect(turns.length).toBeGreaterThanOrEqual(2);
    expect(turns.every((l) => l.status === 200)).toBe(true);
  });
});
