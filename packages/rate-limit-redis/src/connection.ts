import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { consoleLogger, implementing, throttled, type Logger } from '@tera-gw/core';

const logger = implementing<Logger>('a logger (pino or one of its shape)', 'error', 'warn', 'info', 'debug', 'child');

/** How a store reaches Redis, shared by both stores: an ioredis client of yours, or a URL (the store then owns its client). */
export const connectionSchema = z.union([
  z.strictObject({
    /** An ioredis client of yours; the store never quits it. */
    client: implementing<Redis>('an ioredis client', 'defineCommand', 'on', 'quit'),
    prefix: z.string().optional(),
    /** While Redis is not connected, how long a decision waits for it before failing. @defaultValue 500 ms */
    connectWaitMs: z.int().positive().default(500),
    /** Where a lost connection is logged (at most once a minute). @defaultValue the console */
    logger: logger.optional(),
  }),
  z.strictObject({
    /** `redis://127.0.0.1:6379`: the store makes its own client and quits it on `close()`. */
    url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
    /** ioredis options for the client the store makes. */
    redisOptions: z.custom<RedisOptions>((v) => typeof v === 'object' && v !== null, 'must be ioredis options').optional(),
    prefix: z.string().optional(),
    connectWaitMs: z.int().positive().default(500),
    logger: logger.optional(),
  }),
]);

export type RedisConnectionOptions = z.input<typeof connectionSchema>;

export interface Connection<Commands> {
  redis: Redis & Commands;
  /** Resolves once connected, or after `connectWaitMs` (the command then fails fast). */
  ready(): Promise<void>;
  /** Rejects unless Redis answers a PING. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The client, its scripts defined, its errors logged (never swallowed: a lost Redis is said once a
 * minute, and each decision then fails fast so the limiter's policy decides). Commands are not
 * queued while Redis is away; a short wait, shared by all callers, covers connecting.
 */
export function connect<Commands>(
  options: z.output<typeof connectionSchema>,
  scripts: Record<string, { keys: number; lua: string }>,
  what: string,
): Connection<Commands> {
  const owned = 'url' in options;
  const redis: Redis = owned
    ? new Redis(options.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false, ...options.redisOptions })
    : options.client;
  const logger = options.logger ?? consoleLogger();
  const log = throttled(logger);
  redis.on('error', (err: Error) => log.warn({ err, store: what }, `${what}: Redis connection error`));
  // One line per transition, lost then back, whatever the number of errors between them.
  let lost = false;
  const markLost = () => {
    if (lost) return;
    lost = true;
    logger.warn({ store: what }, 'Redis lost');
  };
  let closed = false;
  redis.on('close', () => {
    if (!closed) markLost();
  });
  redis.on('ready', () => {
    if (!lost) return;
    lost = false;
    logger.info({ store: what }, 'Redis back');
  });
  for (const [name, script] of Object.entries(scripts)) redis.defineCommand(name, { numberOfKeys: script.keys, lua: script.lua });
  let waiting: Promise<void> | undefined;
  return {
    redis: redis as Redis & Commands,
    ready() {
      if (redis.status === 'ready') return Promise.resolve();
      waiting ??= new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          redis.off('ready', done);
          waiting = undefined;
          resolve();
        };
        const timer = setTimeout(done, options.connectWaitMs);
        redis.once('ready', done);
      });
      return waiting;
    },
    async ping() {
      await this.ready();
      await redis.ping();
    },
    async close() {
      closed = true;
      if (owned) await redis.quit().catch(() => redis.disconnect());
    },
  };
}
