import type { Redis } from 'ioredis';

/**
 * Commands are not queued while Redis is away (so a dead Redis fails fast and the limiter or
 * the budgets decide what that means); a short wait, shared by all callers, covers connecting
 * and reconnecting.
 */
export function readyWaiter(redis: Redis, waitMs: number): () => Promise<void> {
  let waiting: Promise<void> | undefined;
  return () => {
    if (redis.status === 'ready') return Promise.resolve();
    waiting ??= new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        redis.off('ready', done);
        waiting = undefined;
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      redis.once('ready', done);
    });
    return waiting;
  };
}
