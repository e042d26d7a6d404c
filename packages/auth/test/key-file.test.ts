import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '@tera-gw/core';
import { FileKeyStore, hashKey } from '../src/index.js';

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message?: string;
}

function logger(lines: Line[] = []): Logger & { lines: Line[] } {
  const at =
    (level: string) =>
    (fields: object, message?: string): void =>
      void lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), child: () => logger(lines) };
}

const entries = (...keys: string[]) => JSON.stringify(keys.map((key, i) => ({ key, id: `k${i}` })));
const known = async (store: FileKeyStore, key: string) => (await store.lookup(hashKey(key))) !== undefined;

/** Waits (bounded) for the watcher to act: the only wait in these tests, and it fails rather than hangs. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const dirs: string[] = [];
const stores: FileKeyStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tera-keys-'));
  dirs.push(dir);
  return dir;
}

function open(path: string, log = logger(), watch = true): FileKeyStore {
  const store = new FileKeyStore(path, { label: 'GATEWAY_KEYS', logger: log, watch });
  stores.push(store);
  return store;
}

describe('FileKeyStore', () => {
  it('a file that cannot be used at start-up is one error naming the variable and the field', () => {
    const dir = tempDir();
    expect(() => open(join(dir, 'missing.json'))).toThrow(/^GATEWAY_KEYS: cannot read .*missing\.json: ENOENT$/);
    writeFileSync(join(dir, 'bad.json'), '[{"key": "sk-tera-aaaaaaaa"},');
    expect(() => open(join(dir, 'bad.json'))).toThrow(/^GATEWAY_KEYS: .*bad\.json is not JSON/);
    writeFileSync(
      join(dir, 'period.json'),
      JSON.stringify([{ key: 'sk-tera-a1' }, { key: 'sk-tera-b2' }, { key: 'sk-tera-c3', budget: { usd: 1, period: 'fortnight' } }]),
    );
    expect(() => open(join(dir, 'period.json'))).toThrow(/^GATEWAY_KEYS\[2\]\.budget\.period: /);
    writeFileSync(
      join(dir, 'twice.json'),
      JSON.stringify([
        { key: 'sk-tera-same', id: 'a' },
        { key: 'sk-tera-same', id: 'b' },
      ]),
    );
    expect(() => open(join(dir, 'twice.json'))).toThrow('GATEWAY_KEYS[1]: the same key as GATEWAY_KEYS[0]; each key may appear once');
  });

  it('a file written in place is read again: the new key works, the removed one is gone', async () => {
    const dir = tempDir();
    const path = join(dir, 'keys.json');
    writeFileSync(path, entries('sk-tera-old-key'));
    const log = logger();
    const store = open(path, log);
    expect(await known(store, 'sk-tera-old-key')).toBe(true);
    writeFileSync(path, entries('sk-tera-new-key'));
    await until(() => known(store, 'sk-tera-new-key'), 'the new key');
    expect(await known(store, 'sk-tera-old-key')).toBe(false);
    expect(log.lines).toContainEqual({ level: 'info', fields: { file: path, keys: 1 }, message: 'keys reloaded' });
  });

  it('a file replaced by a rename (as editors save) is read again', async () => {
    const dir = tempDir();
    const path = join(dir, 'keys.json');
    writeFileSync(path, entries('sk-tera-before'));
    const store = open(path);
    writeFileSync(join(dir, '.keys.json.tmp'), entries('sk-tera-after'));
    renameSync(join(dir, '.keys.json.tmp'), path);
    await until(() => known(store, 'sk-tera-after'), 'the renamed-in key');
    expect(await known(store, 'sk-tera-before')).toBe(false);
  });

  it('a symlink swap (as a Kubernetes ConfigMap updates) is read again', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, '..v1'));
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v1', 'keys.json'), entries('sk-tera-version-one'));
    writeFileSync(join(dir, '..v2', 'keys.json'), entries('sk-tera-version-two'));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'keys.json'), join(dir, 'keys.json'));
    const store = open(join(dir, 'keys.json'));
    expect(await known(store, 'sk-tera-version-one')).toBe(true);
    // The kubelet's atomic writer: a new `..data` link made aside, then renamed over the old one.
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await until(() => known(store, 'sk-tera-version-two'), 'the swapped-in key');
    expect(await known(store, 'sk-tera-version-one')).toBe(false);
  });

  it('a broken file is refused with an error line, and the keys in force stay', async () => {
    const dir = tempDir();
    const path = join(dir, 'keys.json');
    writeFileSync(path, entries('sk-tera-keeps-working'));
    const log = logger();
    const store = open(path, log);
    writeFileSync(path, JSON.stringify([{ key: 'sk-tera-x', concurrency: -1 }]));
    await until(() => Promise.resolve(log.lines.some((l) => l.message === 'keys refused')), 'the refusal');
    const refusal = log.lines.find((l) => l.message === 'keys refused')!;
    expect(refusal.level).toBe('error');
    expect(refusal.fields.error).toMatch(/^GATEWAY_KEYS\[0\]\.concurrency: /);
    // Never a key in a log line, even a refused one.
    expect(JSON.stringify(log.lines)).not.toContain('sk-tera-');
    expect(await known(store, 'sk-tera-keeps-working')).toBe(true);
    expect(await known(store, 'sk-tera-x')).toBe(false);
  });

  it('reload() (what SIGHUP calls) says what happened', async () => {
    const dir = tempDir();
    const path = join(dir, 'keys.json');
    writeFileSync(path, entries('sk-tera-one'));
    const store = open(path, logger(), false);
    expect(store.reload()).toBe('unchanged');
    writeFileSync(path, entries('sk-tera-two'));
    expect(store.reload()).toBe('reloaded');
    expect(await known(store, 'sk-tera-two')).toBe(true);
    writeFileSync(path, 'not json');
    expect(store.reload()).toBe('refused');
    expect(await known(store, 'sk-tera-two')).toBe(true);
  });
});
