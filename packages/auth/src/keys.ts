import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A key as the store keeps it: never the key itself, only its SHA-256. */
export interface KeyRecord {
  /** Stable id for logs, spans, usage and limits. */
  id: string;
  /** Models the key may use; `'*'` for all. */
  models: readonly string[] | '*';
  limits?: { concurrency?: number; tokensPerSecond?: number };
  /** After this instant the key answers 401. */
  expiresAt?: Date;
  disabled?: boolean;
  /** Keys of one team share prompt caches under `cacheIsolation: 'team'`. */
  team?: string;
  /** May read operator-only details (replica URLs and load on `/health`). */
  operator?: boolean;
  /** Spend budget per UTC calendar period (enforced by `budgets()` of `@tera-gw/rate-limit`). */
  budget?: KeyBudget;
  /** Admission band while the pool is full: higher first; below 0 is sheddable (refused at once). @defaultValue 0 */
  priority?: number;
  /** May set `X-Tera-Fairness-Id` so its end users queue as separate flows (an in-house gateway fronting many users with one key). */
  fairnessFromHeader?: boolean;
}

export interface KeyBudget {
  usd?: number;
  tokens?: number;
  period: 'day' | 'week' | 'month' | 'total';
}

/** Async, so a database or a secrets service can stand behind it. */
export interface KeyStore {
  /** The record for a key's SHA-256 (32 bytes), or undefined. */
  lookup(keyHash: Buffer): Promise<KeyRecord | undefined>;
}

export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** A short, non-reversible fingerprint that may appear in logs: `sha256:` and 8 hex digits. */
export function fingerprint(key: string): string {
  return `sha256:${hashKey(key).toString('hex').slice(0, 8)}`;
}

/** An entry for `MemoryKeyStore`: the key in clear (hashed at load) or already hashed. */
export interface KeyEntry {
  /** The key in clear; hashed at once and not kept. */
  key?: string;
  /** Or its SHA-256 in hex. */
  sha256?: string;
  id?: string;
  models?: readonly string[] | '*';
  concurrency?: number;
  tokensPerSecond?: number;
  expiresAt?: string | number | Date;
  disabled?: boolean;
  /** Keys of one team share prompt caches under `cacheIsolation: 'team'`. */
  team?: string;
  /** May read operator-only details (replica URLs and load on `/health`). */
  operator?: boolean;
  /** e.g. `{ "usd": 5, "period": "day" }` or `{ "tokens": 1000000, "period": "month" }`. */
  budget?: KeyBudget;
  /** Admission band while the pool is full: higher first; below 0 is sheddable (refused at once). @defaultValue 0 */
  priority?: number;
  /** May set `X-Tera-Fairness-Id` so its end users queue as separate flows. */
  fairnessFromHeader?: boolean;
}

/** Keys held in memory as SHA-256 hashes, built from a list or a JSON file. */
export class MemoryKeyStore implements KeyStore {
  private readonly byHash = new Map<string, { hash: Buffer; record: KeyRecord }>();

  constructor(entries: readonly KeyEntry[]) {
    entries.forEach((entry, i) => {
      const hash = entry.key !== undefined ? hashKey(entry.key) : entry.sha256 !== undefined ? Buffer.from(entry.sha256, 'hex') : undefined;
      if (!hash || hash.length !== 32) throw new TypeError(`key entry ${i}: give \`key\` or a 64-hex-digit \`sha256\``);
      const limits: KeyRecord['limits'] = {};
      if (entry.concurrency !== undefined) limits.concurrency = entry.concurrency;
      if (entry.tokensPerSecond !== undefined) limits.tokensPerSecond = entry.tokensPerSecond;
      const record: KeyRecord = { id: entry.id ?? `key_${hash.toString('hex').slice(0, 12)}`, models: entry.models ?? '*', limits };
      if (entry.expiresAt !== undefined) {
        const at = new Date(entry.expiresAt);
        if (Number.isNaN(at.getTime())) throw new TypeError(`key entry ${i}: \`expiresAt\` is not a date`);
        record.expiresAt = at;
      }
      if (entry.disabled) record.disabled = true;
      if (entry.team !== undefined) record.team = entry.team;
      if (entry.operator) record.operator = true;
      if (entry.priority !== undefined) {
        if (!Number.isInteger(entry.priority) || Math.abs(entry.priority) > 1000)
          throw new TypeError(`key entry ${i}: \`priority\` must be an integer from -1000 to 1000`);
        record.priority = entry.priority;
      }
      if (entry.fairnessFromHeader) record.fairnessFromHeader = true;
      if (entry.budget !== undefined) {
        const { usd, tokens, period } = entry.budget;
        const positive = (v: number | undefined) => v === undefined || (Number.isFinite(v) && v > 0);
        if (
          !['day', 'week', 'month', 'total'].includes(period) ||
          !positive(usd) ||
          !positive(tokens) ||
          (usd === undefined && tokens === undefined)
        )
          throw new TypeError(
            `key entry ${i}: \`budget\` needs a positive \`usd\` and/or \`tokens\` and a \`period\` of day, week, month or total`,
          );
        record.budget = entry.budget;
      }
      this.byHash.set(hash.toString('hex'), { hash, record });
    });
  }

  /** A JSON file holding an array of entries. */
  static fromFile(path: string): MemoryKeyStore {
    const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(data)) throw new TypeError(`${path}: expected a JSON array of key entries`);
    return new MemoryKeyStore(data as KeyEntry[]);
  }

  lookup(keyHash: Buffer): Promise<KeyRecord | undefined> {
    const found = this.byHash.get(keyHash.toString('hex'));
    // The map narrows by hash; the final comparison is constant-time all the same.
    return Promise.resolve(found && timingSafeEqual(found.hash, keyHash) ? found.record : undefined);
  }
}
