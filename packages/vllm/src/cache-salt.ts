import { createHmac, randomBytes } from 'node:crypto';
import type { RequestContext } from '@tera-gw/core';

/**
 * The `cache_salt` for a request: vLLM mixes it into the hash of the first KV block, so
 * prompts with different salts never share cached prefixes and one tenant cannot learn
 * another's prompt from time to first token. An HMAC, so the salt says nothing about the key
 * and cannot be guessed from the key id. Salts are memoized per partition (few distinct values).
 */
export function cacheSalter(
  isolation: 'key' | 'team' | 'none',
  secret: string | undefined,
): (ctx: RequestContext, callerSalt: string | undefined) => string | undefined {
  if (isolation === 'none') return (_ctx, callerSalt) => callerSalt;
  const key = secret ?? randomBytes(32).toString('hex');
  const memo = new Map<string, string>();
  const derive = (partition: string) => {
    let salt = memo.get(partition);
    if (salt === undefined) {
      salt = createHmac('sha256', key).update(partition).digest('base64url');
      if (memo.size > 10_000) memo.clear();
      memo.set(partition, salt);
    }
    return salt;
  };
  return (ctx, callerSalt) => {
    const keyId = ctx.key?.id;
    // Without auth in front (auth: false), every request is one tenant as far as the gateway knows.
    const partition = isolation === 'team' && ctx.key?.team !== undefined ? `team:${ctx.key.team}` : `key:${keyId ?? ''}`;
    const salt = derive(partition);
    // A caller's own salt narrows its partition further; it can never widen it to another tenant's.
    return callerSalt === undefined ? salt : createHmac('sha256', key).update(`${partition}\u0000${callerSalt}`).digest('base64url');
  };
}
