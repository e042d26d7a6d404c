import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * `pnpm bench`: the gateway bench, then the routing bench, so one run reports every
 * performance target. Naming targets (`pnpm bench pipe-proxy express`) runs the gateway
 * bench alone, for those targets.
 */
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const targets = process.argv.slice(2).filter((a) => a !== '--');
const run = (script: string, args: string[] = []) => {
  const result = spawnSync(process.execPath, [here(script), ...args], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
};
run('./run.js', targets);
if (targets.length === 0) run('./routing.js');
