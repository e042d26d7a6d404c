import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Portkey's open-source gateway, installed on demand from the registry into a cache folder
 * (not a dependency of the repository: only the benchmark uses it). Returns its entry script,
 * or undefined when it cannot be installed here.
 */
export const PORTKEY_VERSION = '1.15.2';

export function portkeyEntry(): string | undefined {
  const dir = fileURLToPath(new URL('../../../bench-results/peer', import.meta.url));
  const entry = `${dir}/node_modules/@portkey-ai/gateway/build/start-server.js`;
  if (existsSync(entry)) return entry;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/package.json`, '{"private":true}');
    execFileSync(
      'npm',
      ['install', '--prefix', dir, '--no-audit', '--no-fund', '--ignore-scripts', `@portkey-ai/gateway@${PORTKEY_VERSION}`],
      { stdio: 'ignore' },
    );
    return existsSync(entry) ? entry : undefined;
  } catch {
    return undefined;
  }
}
