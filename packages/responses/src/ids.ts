import { randomBytes } from 'node:crypto';

// Ids come from one pooled random buffer: unguessable (a response id is a capability within its
// key) without a crypto call per item.
const POOL_BYTES = 4096;
const ID_BYTES = 24;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

/** `resp_…`, `msg_…`, `rs_…`, `fc_…`: the prefix and 48 hex digits, as OpenAI's ids look. */
export function newId(prefix: 'resp' | 'msg' | 'rs' | 'fc' | 'item'): string {
  if (offset + ID_BYTES > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return `${prefix}_${hex}`;
}
