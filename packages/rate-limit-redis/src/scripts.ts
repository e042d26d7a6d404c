/* The Lua of the Redis stores: each decision is one script, so it is atomic across every gateway host. */

// One atomic decision per call. Time comes from Redis (TIME), so hosts with skewed clocks agree.
// KEYS[1] bucket hash {tokens, ts}; KEYS[2] lease sorted set (score = expiry ms).
// ARGV: cost, concurrency, tokensPerSecond, burst, leaseTtlMs, leaseId.
export const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost, concurrency, rate, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = redis.call('ZCARD', KEYS[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) / 1000 * rate)
local idle = math.ceil((burst - math.min(tokens, burst)) / rate * 1000) + ttl
local function save()
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], idle)
end
if held >= concurrency then
  save()
  return {0, 'concurrency', '1000', 0, tostring(tokens)}
end
if tokens <= 0 then
  save()
  return {0, 'tokens', tostring(-tokens / rate * 1000 + 1), concurrency - held, tostring(tokens)}
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl)
tokens = tokens - cost
save()
return {1, 'ok', '0', concurrency - held - 1, tostring(tokens)}
`;

// KEYS as above; ARGV: leaseId, adjust, tokensPerSecond, burst. Only a lease that still exists is corrected: release is idempotent.
export const RELEASE = `
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local adjust, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, math.min(burst, tokens + (now - ts) / 1000 * rate) - adjust)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
return 1
`;

// One atomic decision per call; time from Redis (TIME), so hosts with skewed clocks agree on hold expiry.
// KEYS[1] spent hash {usd, tokens}; KEYS[2] holds hash {holdId: "usd tokens expiresAtMs"}.
// ARGV: limitUsd ('' for none), limitTokens ('' for none), holdUsd, holdTokens, holdTtlMs, holdId, keepForMs ('' for ever).
export const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spentUsd = tonumber(redis.call('HGET', KEYS[1], 'usd')) or 0
local spentTokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0
local heldUsd, heldTokens = 0, 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local usd, tokens, expires = string.match(holds[i + 1], '(%S+) (%S+) (%S+)')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[2], holds[i])
  else
    heldUsd = heldUsd + tonumber(usd)
    heldTokens = heldTokens + tonumber(tokens)
  end
end
local state = {tostring(spentUsd), tostring(spentTokens), tostring(heldUsd), tostring(heldTokens)}
if ARGV[1] ~= '' and spentUsd + heldUsd >= tonumber(ARGV[1]) then return {0, 'usd', unpack(state)} end
if ARGV[2] ~= '' and spentTokens + heldTokens >= tonumber(ARGV[2]) then return {0, 'tokens', unpack(state)} end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. tostring(now + tonumber(ARGV[5])))
if ARGV[7] ~= '' then
  -- The spent hash must exist for its TTL to hold: settle only increments it.
  redis.call('HSETNX', KEYS[1], 'usd', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
state[3] = tostring(heldUsd + tonumber(ARGV[3]))
state[4] = tostring(heldTokens + tonumber(ARGV[4]))
return {1, 'ok', unpack(state)}
`;

// KEYS as above; ARGV: holdId, usd, tokens. Only a hold that still exists settles: idempotent.
export const SETTLE = `
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'usd', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], 'tokens', ARGV[3])
return 1
`;
