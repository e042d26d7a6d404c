import { createHash } from 'node:crypto';
import type { ResponseObject, StoredInputItem } from './types.js';

/** What `put` stores: the response the caller got, and every input item the model saw (oldest first). */
export interface StoredResponse {
  response: ResponseObject;
  /** The previous chain's items, then this request's own: the conversation up to this response. */
  input: StoredInputItem[];
}

/** Items as stored: each its own JSON text, so reading one never parses the others. */
export interface StoredItems {
  items: StoredInputItem[];
  /** The JSON bytes the items take: what they add to a request that uses them. */
  bytes: number;
}

/** A page of a response's input items, as `GET /responses/{id}/input_items` answers it. */
export interface InputPage {
  /** The items' JSON texts, in the order asked. */
  items: string[];
  firstId: string | null;
  lastId: string | null;
  hasMore: boolean;
}

export interface InputPageQuery {
  limit: number;
  order: 'asc' | 'desc';
  /** An item id: the page starts after it. */
  after?: string | undefined;
}

/**
 * Where `store: true` responses live, for `previous_response_id`, retrieval, input-item listing
 * and `item_reference`. Every call names the API key: a response and its items exist only for the
 * key that made them, item ids (which callers may choose) included, so no two keys ever share or
 * collide on one. Each key has a quota of its own (bytes and responses); past it, that key's
 * oldest responses go first, never another key's. Memory by default; `RedisResponseStore` for
 * several gateway hosts.
 */
export interface ResponseStore {
  put(keyId: string, record: StoredResponse): Promise<void>;
  /** The response's JSON text as it was stored (served as is, never parsed again), or undefined. */
  responseText(keyId: string, id: string): Promise<string | undefined>;
  /** The conversation up to the response: its input items, then its output items. */
  conversation(keyId: string, id: string): Promise<StoredItems | undefined>;
  /** One item (input or output of any stored response of the key), by id. */
  item(keyId: string, itemId: string): Promise<StoredItems | undefined>;
  /** Undefined when there is no such response; `after_not_found` when `after` is not among its input items. */
  inputPage(keyId: string, id: string, query: InputPageQuery): Promise<InputPage | 'after_not_found' | undefined>;
  /** True when something was deleted. */
  delete(keyId: string, id: string): Promise<boolean>;
  /** Resolves when the store answers (the gateway's readiness probe asks); absent for a store in memory. */
  ping?(): Promise<void>;
}

export interface StoreBounds {
  /** How long a response is kept. @defaultValue 24 h (memory), 30 days (Redis, as OpenAI) */
  ttlMs?: number;
  /** Largest stored record (JSON bytes); a larger response is answered but not stored. @defaultValue 4 MiB */
  maxRecordBytes?: number;
  /**
   * What one API key may keep: past either bound its own oldest responses go first.
   * @defaultValue `{ maxBytes: 16 MiB, maxResponses: 1000 }`
   */
  perKey?: { maxBytes?: number; maxResponses?: number };
}

export interface MemoryStoreOptions extends StoreBounds {
  /** Bytes of JSON kept in all; past it the oldest responses of the key holding the most go first. @defaultValue 64 MiB */
  maxBytes?: number;
}

const DAY = 24 * 60 * 60 * 1000;
const MiB = 1024 * 1024;

interface Bounds {
  ttlMs: number;
  maxRecord: number;
  keyBytes: number;
  keyResponses: number;
}

function bounds(options: StoreBounds, ttlMs: number): Bounds {
  const positive = (name: string, value: number | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    if (!(Number.isFinite(value) && value > 0)) throw new TypeError(`response store: '${name}' must be a positive number, got ${value}`);
    return value;
  };
  return {
    ttlMs: positive('ttlMs', options.ttlMs, ttlMs),
    maxRecord: positive('maxRecordBytes', options.maxRecordBytes, 4 * MiB),
    keyBytes: positive('perKey.maxBytes', options.perKey?.maxBytes, 16 * MiB),
    keyResponses: positive('perKey.maxResponses', options.perKey?.maxResponses, 1000),
  };
}

/** A record split into JSON texts: the response, then each input and output item on its own. */
interface Encoded {
  id: string;
  response: string;
  input: string[];
  output: string[];
  inputIds: string[];
  outputIds: string[];
  bytes: number;
}

function encode(record: StoredResponse): Encoded {
  const response = JSON.stringify(record.response);
  const input = record.input.map((item) => JSON.stringify(item));
  const output = record.response.output.map((item) => JSON.stringify(item));
  let bytes = response.length;
  for (const text of input) bytes += text.length;
  for (const text of output) bytes += text.length;
  return {
    id: record.response.id,
    response,
    input,
    output,
    inputIds: record.input.map((i) => i.id),
    outputIds: record.response.output.map((i) => i.id),
    bytes,
  };
}

function parseItems(texts: readonly string[]): StoredItems {
  let bytes = 0;
  const items = texts.map((text) => {
    bytes += text.length;
    return JSON.parse(text) as StoredInputItem;
  });
  return { items, bytes };
}

/** The page of `ids` a query asks for, as indexes into them. */
function pageOf(ids: readonly string[], query: InputPageQuery): { indexes: number[]; hasMore: boolean } | 'after_not_found' {
  const ordered = ids.map((_, i) => i);
  if (query.order === 'desc') ordered.reverse();
  let start = 0;
  if (query.after) {
    const at = ordered.findIndex((i) => ids[i] === query.after);
    if (at === -1) return 'after_not_found';
    start = at + 1;
  }
  const indexes = ordered.slice(start, start + query.limit);
  return { indexes, hasMore: ordered.length > start + query.limit };
}

interface MemoryRecord extends Encoded {
  keyId: string;
  expires: number;
}

interface KeyShelf {
  /** This key's responses, oldest first (a Map keeps insertion order). */
  records: Map<string, MemoryRecord>;
  /** Item id -> the response that holds it, and where. */
  items: Map<string, { response: string; output: boolean; index: number }>;
  bytes: number;
}

/** The process's own store, bounded in bytes (per key and in all) and time. Kept as JSON so a caller never shares our objects. */
export class MemoryResponseStore implements ResponseStore {
  readonly #shelves = new Map<string, KeyShelf>();
  readonly #bounds: Bounds;
  readonly #maxBytes: number;
  #bytes = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.#bounds = bounds(options, DAY);
    this.#maxBytes = options.maxBytes ?? 64 * MiB;
  }

  put(keyId: string, record: StoredResponse): Promise<void> {
    const encoded = encode(record);
    const b = this.#bounds;
    if (encoded.bytes > b.maxRecord || encoded.bytes > b.keyBytes || encoded.bytes > this.#maxBytes) return Promise.resolve();
    let shelf = this.#shelves.get(keyId);
    if (!shelf) {
      shelf = { records: new Map(), items: new Map(), bytes: 0 };
      this.#shelves.set(keyId, shelf);
    }
    this.#remove(shelf, encoded.id);
    const stored: MemoryRecord = { ...encoded, keyId, expires: Date.now() + b.ttlMs };
    shelf.records.set(encoded.id, stored);
    encoded.inputIds.forEach((id, index) => shelf.items.set(id, { response: encoded.id, output: false, index }));
    encoded.outputIds.forEach((id, index) => shelf.items.set(id, { response: encoded.id, output: true, index }));
    shelf.bytes += encoded.bytes;
    this.#bytes += encoded.bytes;
    // The key's own oldest go first when it is over its quota.
    for (const [id] of shelf.records) {
      if (shelf.bytes <= b.keyBytes && shelf.records.size <= b.keyResponses) break;
      this.#remove(shelf, id);
    }
    // Over the store's own bound: the key holding the most gives up its oldest, so a key within its share keeps everything.
    while (this.#bytes > this.#maxBytes) {
      let largest: KeyShelf | undefined;
      for (const s of this.#shelves.values()) if (!largest || s.bytes > largest.bytes) largest = s;
      const oldest = largest?.records.keys().next();
      if (!largest || !oldest || oldest.done) break;
      this.#remove(largest, oldest.value);
    }
    return Promise.resolve();
  }

  responseText(keyId: string, id: string): Promise<string | undefined> {
    return Promise.resolve(this.#live(keyId, id)?.response);
  }

  conversation(keyId: string, id: string): Promise<StoredItems | undefined> {
    const record = this.#live(keyId, id);
    return Promise.resolve(record ? parseItems([...record.input, ...record.output]) : undefined);
  }

  item(keyId: string, itemId: string): Promise<StoredItems | undefined> {
    const where = this.#shelves.get(keyId)?.items.get(itemId);
    const record = where ? this.#live(keyId, where.response) : undefined;
    const text = record && where ? (where.output ? record.output : record.input)[where.index] : undefined;
    return Promise.resolve(text === undefined ? undefined : parseItems([text]));
  }

  inputPage(keyId: string, id: string, query: InputPageQuery): Promise<InputPage | 'after_not_found' | undefined> {
    const record = this.#live(keyId, id);
    if (!record) return Promise.resolve(undefined);
    const page = pageOf(record.inputIds, query);
    if (page === 'after_not_found') return Promise.resolve(page);
    return Promise.resolve({
      items: page.indexes.map((i) => record.input[i]!),
      firstId: page.indexes.length ? record.inputIds[page.indexes[0]!]! : null,
      lastId: page.indexes.length ? record.inputIds[page.indexes.at(-1)!]! : null,
      hasMore: page.hasMore,
    });
  }

  delete(keyId: string, id: string): Promise<boolean> {
    const shelf = this.#shelves.get(keyId);
    return Promise.resolve(shelf ? this.#remove(shelf, id) : false);
  }

  #live(keyId: string, id: string): MemoryRecord | undefined {
    const shelf = this.#shelves.get(keyId);
    const record = shelf?.records.get(id);
    if (!shelf || !record) return undefined;
    if (record.expires > Date.now()) return record;
    this.#remove(shelf, id);
    return undefined;
  }

  #remove(shelf: KeyShelf, id: string): boolean {
    const record = shelf.records.get(id);
    if (!record) return false;
    shelf.records.delete(id);
    shelf.bytes -= record.bytes;
    this.#bytes -= record.bytes;
    for (const item of [...record.inputIds, ...record.outputIds]) if (shelf.items.get(item)?.response === id) shelf.items.delete(item);
    if (!shelf.records.size) this.#shelves.delete(record.keyId);
    return true;
  }
}

/** The commands the Redis store sends; an ioredis client (v5/v6) fits as is. */
export interface RedisLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  hget(key: string, field: string): Promise<string | null>;
  hmget(key: string, ...fields: string[]): Promise<Array<string | null>>;
  ping?(): Promise<unknown>;
}

export interface RedisResponseStoreOptions extends StoreBounds {
  client: RedisLike;
  /** @defaultValue `tera:resp:` */
  prefix?: string;
}

// One key's data shares a hash tag, so each script touches one Redis Cluster slot.
// KEYS: index (zset id -> created ms), sizes (hash id -> bytes), items (hash item id -> "response field"), total (bytes).
// The response hash `<prefix>r:<id>` holds `response`, `created`, `ids` (its input then output item ids, JSON), `inputs` (how many are input), `in:<n>`, `out:<n>`.
const EVICT = `
local function drop(id)
  local hash = ARGV[1] .. id
  local ids = redis.call('HGET', hash, 'ids')
  if ids then
    for _, item in ipairs(cjson.decode(ids)) do
      local at = redis.call('HGET', KEYS[3], item)
      if at and string.sub(at, 1, #id + 1) == id .. ' ' then redis.call('HDEL', KEYS[3], item) end
    end
  end
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], id)
  local size = tonumber(redis.call('HGET', KEYS[2], id)) or 0
  redis.call('HDEL', KEYS[2], id)
  redis.call('DECRBY', KEYS[4], size)
end
`;

// ARGV: prefix of response hashes, id, now, ttl, maxBytes, maxResponses, bytes, response, ids JSON, nIn, nOut, then nIn input texts, nOut output texts.
const PUT = `${EVICT}
local id, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local maxBytes, maxResponses, bytes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('ZSCORE', KEYS[1], id) then drop(id) end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do drop(old) end
local total = (tonumber(redis.call('GET', KEYS[4])) or 0) + bytes
local count = redis.call('ZCARD', KEYS[1]) + 1
while total > maxBytes or count > maxResponses do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not oldest then break end
  total = total - (tonumber(redis.call('HGET', KEYS[2], oldest)) or 0)
  count = count - 1
  drop(oldest)
end
local hash = ARGV[1] .. id
local nIn, nOut = tonumber(ARGV[10]), tonumber(ARGV[11])
local ids = cjson.decode(ARGV[9])
redis.call('HSET', hash, 'response', ARGV[8], 'created', now, 'ids', ARGV[9], 'inputs', nIn)
for i = 1, nIn do
  redis.call('HSET', hash, 'in:' .. (i - 1), ARGV[11 + i])
  redis.call('HSET', KEYS[3], ids[i], id .. ' in:' .. (i - 1))
end
for i = 1, nOut do
  redis.call('HSET', hash, 'out:' .. (i - 1), ARGV[11 + nIn + i])
  redis.call('HSET', KEYS[3], ids[nIn + i], id .. ' out:' .. (i - 1))
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, bytes)
redis.call('INCRBY', KEYS[4], bytes)
-- A key that stops storing is forgotten whole after the TTL; reads check each response's own age.
redis.call('PEXPIRE', hash, ttl)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
`;

// ARGV: prefix of response hashes, id. Returns 1 when something was deleted.
const DELETE = `${EVICT}
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
drop(ARGV[2])
return 1
`;

/** Responses in Redis, so every gateway host serves `previous_response_id` and retrieval for every other. */
export class RedisResponseStore implements ResponseStore {
  readonly #client: RedisLike;
  readonly #prefix: string;
  readonly #bounds: Bounds;

  constructor(options: RedisResponseStoreOptions) {
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'tera:resp:';
    this.#bounds = bounds(options, 30 * DAY);
  }

  async ping(): Promise<void> {
    await this.#client.ping?.();
  }

  /** The key's Redis keys: its id hashed (key ids may hold any character) inside a hash tag. */
  #keys(keyId: string) {
    const tag = `${this.#prefix}{${createHash('sha256').update(keyId).digest('hex').slice(0, 32)}}:`;
    return { hashes: `${tag}r:`, index: `${tag}index`, sizes: `${tag}sizes`, items: `${tag}items`, total: `${tag}total` };
  }

  async put(keyId: string, record: StoredResponse): Promise<void> {
    const encoded = encode(record);
    const b = this.#bounds;
    if (encoded.bytes > b.maxRecord || encoded.bytes > b.keyBytes) return;
    const k = this.#keys(keyId);
    await this.#client.eval(
      PUT,
      4,
      k.index,
      k.sizes,
      k.items,
      k.total,
      k.hashes,
      encoded.id,
      Date.now(),
      b.ttlMs,
      b.keyBytes,
      b.keyResponses,
      encoded.bytes,
      encoded.response,
      JSON.stringify([...encoded.inputIds, ...encoded.outputIds]),
      encoded.input.length,
      encoded.output.length,
      ...encoded.input,
      ...encoded.output,
    );
  }

  /** The response hash's fields, or undefined when it is missing or older than the TTL. */
  async #fields(keyId: string, id: string, fields: string[]): Promise<Array<string | null> | undefined> {
    const values = await this.#client.hmget(`${this.#keys(keyId).hashes}${id}`, 'created', ...fields);
    const created = Number(values[0]);
    if (values[0] === null || created + this.#bounds.ttlMs <= Date.now()) return undefined;
    return values.slice(1);
  }

  async responseText(keyId: string, id: string): Promise<string | undefined> {
    return (await this.#fields(keyId, id, ['response']))?.[0] ?? undefined;
  }

  /** The response's item ids, split into input and output. */
  async #itemIds(keyId: string, id: string): Promise<{ input: string[]; output: string[] } | undefined> {
    const head = await this.#fields(keyId, id, ['ids', 'inputs']);
    if (!head?.[0]) return undefined;
    const all = JSON.parse(head[0]) as string[];
    const inputs = Number(head[1]);
    return { input: all.slice(0, inputs), output: all.slice(inputs) };
  }

  async conversation(keyId: string, id: string): Promise<StoredItems | undefined> {
    const ids = await this.#itemIds(keyId, id);
    if (!ids) return undefined;
    const names = [...ids.input.map((_, i) => `in:${i}`), ...ids.output.map((_, i) => `out:${i}`)];
    const texts = names.length ? await this.#fields(keyId, id, names) : [];
    if (!texts || texts.some((t) => t === null)) return undefined;
    return parseItems(texts as string[]);
  }

  async item(keyId: string, itemId: string): Promise<StoredItems | undefined> {
    const k = this.#keys(keyId);
    const at = await this.#client.hget(k.items, itemId);
    if (!at) return undefined;
    const space = at.indexOf(' ');
    const text = (await this.#fields(keyId, at.slice(0, space), [at.slice(space + 1)]))?.[0];
    return text ? parseItems([text]) : undefined;
  }

  async inputPage(keyId: string, id: string, query: InputPageQuery): Promise<InputPage | 'after_not_found' | undefined> {
    const ids = await this.#itemIds(keyId, id);
    if (!ids) return undefined;
    const page = pageOf(ids.input, query);
    if (page === 'after_not_found') return page;
    const texts = page.indexes.length
      ? await this.#fields(
          keyId,
          id,
          page.indexes.map((i) => `in:${i}`),
        )
      : [];
    if (!texts || texts.some((t) => t === null)) return undefined;
    return {
      items: texts as string[],
      firstId: page.indexes.length ? ids.input[page.indexes[0]!]! : null,
      lastId: page.indexes.length ? ids.input[page.indexes.at(-1)!]! : null,
      hasMore: page.hasMore,
    };
  }

  async delete(keyId: string, id: string): Promise<boolean> {
    const k = this.#keys(keyId);
    return (await this.#client.eval(DELETE, 4, k.index, k.sizes, k.items, k.total, k.hashes, id)) === 1;
  }
}
