import type { ResponseObject, StoredInputItem } from './types.js';

/** A stored response: what the caller got, and every input item the model saw (oldest first). */
export interface StoredResponse {
  /** The API key that created it: only that key may read, list or delete it. */
  keyId: string;
  response: ResponseObject;
  /** The previous chain's items, then this request's own: the conversation up to this response. */
  input: StoredInputItem[];
}

/**
 * Where `store: true` responses live, for `previous_response_id`, retrieval, input-item listing
 * and `item_reference`. Memory by default; `RedisResponseStore` for several gateway hosts.
 */
export interface ResponseStore {
  put(record: StoredResponse): Promise<void>;
  get(id: string): Promise<StoredResponse | undefined>;
  /** True when something was deleted. */
  delete(id: string): Promise<boolean>;
  /** The response that holds an item (input or output) with this id. */
  responseOfItem(itemId: string): Promise<string | undefined>;
}

export interface StoreBounds {
  /** How long a response is kept. @defaultValue 24 h (memory), 30 days (Redis, as OpenAI) */
  ttlMs?: number;
  /** Largest stored record (JSON bytes); a larger response is answered but not stored. @defaultValue 8 MiB */
  maxRecordBytes?: number;
}

export interface MemoryStoreOptions extends StoreBounds {
  /** Bytes of JSON kept in all; the oldest responses go first. @defaultValue 64 MiB */
  maxBytes?: number;
}

const DAY = 24 * 60 * 60 * 1000;
const DEFAULT_MAX_RECORD = 8 * 1024 * 1024;

function itemIds(record: StoredResponse): string[] {
  const ids: string[] = [];
  for (const item of record.input) ids.push(item.id);
  for (const item of record.response.output) ids.push(item.id);
  return ids;
}

/** The process's own store: bounded in bytes and time, oldest out first. Kept as JSON so a caller never shares our objects. */
export class MemoryResponseStore implements ResponseStore {
  readonly #records = new Map<string, { json: string; expires: number; items: string[] }>();
  readonly #items = new Map<string, string>();
  readonly #ttl: number;
  readonly #maxBytes: number;
  readonly #maxRecord: number;
  #bytes = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.#ttl = options.ttlMs ?? DAY;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#maxRecord = options.maxRecordBytes ?? DEFAULT_MAX_RECORD;
  }

  put(record: StoredResponse): Promise<void> {
    const json = JSON.stringify(record);
    if (json.length > this.#maxRecord || json.length > this.#maxBytes) return Promise.resolve();
    this.#remove(record.response.id);
    const items = itemIds(record);
    this.#records.set(record.response.id, { json, expires: Date.now() + this.#ttl, items });
    for (const id of items) this.#items.set(id, record.response.id);
    this.#bytes += json.length;
    for (const [id] of this.#records) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#remove(id);
    }
    return Promise.resolve();
  }

  get(id: string): Promise<StoredResponse | undefined> {
    const entry = this.#records.get(id);
    if (!entry) return Promise.resolve(undefined);
    if (entry.expires <= Date.now()) {
      this.#remove(id);
      return Promise.resolve(undefined);
    }
    return Promise.resolve(JSON.parse(entry.json) as StoredResponse);
  }

  delete(id: string): Promise<boolean> {
    return Promise.resolve(this.#remove(id));
  }

  responseOfItem(itemId: string): Promise<string | undefined> {
    return Promise.resolve(this.#items.get(itemId));
  }

  #remove(id: string): boolean {
    const entry = this.#records.get(id);
    if (!entry) return false;
    this.#records.delete(id);
    this.#bytes -= entry.json.length;
    for (const item of entry.items) if (this.#items.get(item) === id) this.#items.delete(item);
    return true;
  }
}

/** The few commands the Redis store sends; an ioredis client (v5/v6) fits as is. */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, mode: 'PX', ttlMs: number): Promise<unknown>;
  del(...keys: string[]): Promise<number>;
  mset(...keyValues: string[]): Promise<unknown>;
  pexpire(key: string, ttlMs: number): Promise<number>;
}

export interface RedisStoreOptions extends StoreBounds {
  client: RedisLike;
  /** @defaultValue `tera:resp:` */
  prefix?: string;
}

/** Responses in Redis, so every gateway host serves `previous_response_id` and retrieval for every other. */
export class RedisResponseStore implements ResponseStore {
  readonly #client: RedisLike;
  readonly #prefix: string;
  readonly #ttl: number;
  readonly #maxRecord: number;

  constructor(options: RedisStoreOptions) {
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'tera:resp:';
    this.#ttl = options.ttlMs ?? 30 * DAY;
    this.#maxRecord = options.maxRecordBytes ?? DEFAULT_MAX_RECORD;
  }

  async put(record: StoredResponse): Promise<void> {
    const json = JSON.stringify(record);
    if (json.length > this.#maxRecord) return;
    const id = record.response.id;
    const items = itemIds(record);
    // Item pointers first: a response that can be read always resolves its items.
    if (items.length) {
      const pairs: string[] = [];
      for (const item of items) pairs.push(`${this.#prefix}item:${item}`, id);
      await this.#client.mset(...pairs);
      await Promise.all(items.map((item) => this.#client.pexpire(`${this.#prefix}item:${item}`, this.#ttl)));
    }
    await this.#client.set(`${this.#prefix}${id}`, json, 'PX', this.#ttl);
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const json = await this.#client.get(`${this.#prefix}${id}`);
    return json === null ? undefined : (JSON.parse(json) as StoredResponse);
  }

  async delete(id: string): Promise<boolean> {
    return (await this.#client.del(`${this.#prefix}${id}`)) > 0;
  }

  async responseOfItem(itemId: string): Promise<string | undefined> {
    return (await this.#client.get(`${this.#prefix}item:${itemId}`)) ?? undefined;
  }
}
