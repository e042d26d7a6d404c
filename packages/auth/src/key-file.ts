import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { consoleLogger, type Logger } from '@tera-gw/core';
import { MemoryKeyStore, type KeyRecord, type KeyStore } from './keys.js';
import type { KeyEntry } from './options.js';

export interface KeyFileOptions {
  /** Names the file in errors (`GATEWAY_KEYS[2].budget.period`). @defaultValue the path */
  label?: string;
  /** Re-read the file when it changes. @defaultValue true */
  watch?: boolean;
  /** Where `keys reloaded` and `keys refused` go. @defaultValue the console (warnings and errors only) */
  logger?: Logger;
}

/** Editors write a file in several steps and a ConfigMap swaps a symlink in two: one read once they settle. */
const SETTLE_MS = 50;

/**
 * Reads a JSON array of key entries whole: a file that is not there, not JSON or not valid says
 * which, with the field (`GATEWAY_KEYS[2].budget.period`).
 */
function readKeyFile(path: string, label: string): { store: MemoryKeyStore; digest: string; count: number } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TypeError(`${label}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new TypeError(`${label}: ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(data)) throw new TypeError(`${label}: ${path} must hold a JSON array of key entries`);
  return {
    store: new MemoryKeyStore(data as KeyEntry[], label),
    digest: createHash('sha256').update(text).digest('hex'),
    count: data.length,
  };
}

/**
 * Keys from a JSON file that may change under a running gateway: re-read when the file changes
 * (written in place, replaced by a rename, or swapped behind a symlink as a Kubernetes ConfigMap
 * is) and on `reload()` (wire it to SIGHUP). A new file is checked whole and swapped in at once;
 * a broken one is refused and the keys in force stay. Requests already authenticated keep their
 * key: a stream in flight finishes, and a removed key gets 401 on its next request.
 */
export class FileKeyStore implements KeyStore {
  readonly path: string;
  readonly #label: string;
  readonly #logger: Logger;
  #current: MemoryKeyStore;
  #digest: string;
  #watcher: FSWatcher | undefined;
  #settle: NodeJS.Timeout | undefined;

  /** Throws (a TypeError naming the file and the field) when the file cannot be used at start-up. */
  constructor(path: string, options: KeyFileOptions = {}) {
    this.path = path;
    this.#label = options.label ?? path;
    this.#logger = options.logger ?? consoleLogger();
    const first = readKeyFile(path, this.#label);
    this.#current = first.store;
    this.#digest = first.digest;
    if (options.watch !== false) this.#watch();
  }

  lookup(keyHash: Buffer): Promise<KeyRecord | undefined> {
    return this.#current.lookup(keyHash);
  }

  /**
   * Reads the file again: `reloaded` when its keys are now in force, `unchanged` when its bytes are
   * the same, `refused` (and an error line) when it cannot be used.
   */
  reload(): 'reloaded' | 'unchanged' | 'refused' {
    let next: ReturnType<typeof readKeyFile>;
    try {
      next = readKeyFile(this.path, this.#label);
    } catch (err) {
      this.#logger.error({ file: this.path, error: (err as Error).message }, 'keys refused');
      return 'refused';
    }
    if (next.digest === this.#digest) return 'unchanged';
    this.#current = next.store;
    this.#digest = next.digest;
    this.#logger.info({ file: this.path, keys: next.count }, 'keys reloaded');
    return 'reloaded';
  }

  /** Stops watching the file. */
  close(): void {
    clearTimeout(this.#settle);
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * The directory is watched, not the file: a rename over the file or a symlink swap replaces the
   * inode a watch on the file would follow, and its events would stop.
   */
  #watch(): void {
    // Any entry may be the one (a ConfigMap swaps `..data`, an editor renames a temporary file): the
    // file is read again on each settled change, and only new bytes count as a reload.
    this.#watcher = watch(dirname(this.path), { persistent: false }, () => {
      clearTimeout(this.#settle);
      this.#settle = setTimeout(() => this.reload(), SETTLE_MS);
      this.#settle.unref();
    });
    this.#watcher.on('error', (err) => this.#logger.warn({ file: this.path, err }, 'keys file: watching stopped'));
  }
}
