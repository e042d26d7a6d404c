import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describeIssue } from '@tera-gw/core';
import { z } from 'zod';
import { keyEntrySchema, type KeyBudget, type KeyEntry } from './options.js';

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

/** Keys held in memory as SHA-256 hashes, built from a list or a JSON file. */
export class MemoryKeyStore implements KeyStore {
  private readonly byHash = new Map<string, { hash: Buffer; record: KeyRecord }>();

  /**
   * `label` names the list in errors (`keys[2].budget.period`, `GATEWAY_KEYS[2].budget.period`):
   * the whole list is checked before any key is kept, and the same key twice is refused.
   */
  constructor(entries: readonly KeyEntry[], label = 'keys') {
    const parsed = z.array(keyEntrySchema).safeParse(entries, { reportInput: true });
    if (!parsed.success) {
      const { path, message } = describeIssue(parsed.error.issues[0]!);
      throw new TypeError(`${label}${path}: ${message}`);
    }
    const seen = new Map<string, number>();
    parsed.data.forEach((entry, i) => {
      const hash = entry.key !== undefined ? hashKey(entry.key) : Buffer.from(entry.sha256!, 'hex');
      const hex = hash.toString('hex');
      const first = seen.get(hex);
      if (first !== undefined) throw new TypeError(`${label}[${i}]: the same key as ${label}[${first}]; each key may appear once`);
      seen.set(hex, i);
      const limits: KeyRecord['limits'] = {};
      if (entry.concurrency !== undefined) limits.concurrency = entry.concurrency;
      if (entry.tokensPerSecond !== undefined) limits.tokensPerSecond = entry.tokensPerSecond;
      const record: KeyRecord = { id: entry.id ?? `key_${hex.slice(0, 12)}`, models: entry.models ?? '*', limits };
      if (entry.expiresAt !== undefined) record.expiresAt = new Date(entry.expiresAt);
      if (entry.disabled) record.disabled = true;
      if (entry.team !== undefined) record.team = entry.team;
      if (entry.operator) record.operator = true;
      if (entry.priority !== undefined) record.priority = entry.priority;
      if (entry.fairnessFromHeader) record.fairnessFromHeader = true;
      if (entry.budget !== undefined) record.budget = entry.budget;
      this.byHash.set(hex, { hash, record });
    });
  }

  /** A JSON file holding an array of entries. */
  static fromFile(path: string): MemoryKeyStore {
    const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(data)) throw new TypeError(`${path}: expected a JSON array of key entries`);
    return new MemoryKeyStore(data as KeyEntry[], path);
  }

  lookup(keyHash: Buffer): Promise<KeyRecord | undefined> {
    const found = this.byHash.get(keyHash.toString('hex'));
    // The map narrows by hash; the final comparison is constant-time all the same.
    return Promise.resolve(found && timingSafeEqual(found.hash, keyHash) ? found.record : undefined);
  }
}
