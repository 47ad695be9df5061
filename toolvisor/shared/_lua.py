"""The Lua scripts of the fleet-wide state: each exchange is one atomic step on Redis.

Every script reads the server's clock (``TIME``), so the fleet shares one clock whatever
its hosts' clocks say, and remembers the last request it applied per ledger (KEYS[2],
``seq:answer``): a request sent again after a lost reply is answered from that memory,
not applied twice. Every key has a TTL, so a name nobody uses any more vanishes.
"""

from __future__ import annotations

__all__ = ["BREAKER", "BUDGET", "RATE"]

_NOW = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

BUDGET = (
    _NOW
    + """
-- KEYS[1]: prefix of the slice hashes, KEYS[2]: this ledger's last answer
-- ARGV: seq, calls, retries, returned, returned_slice, want, ratio, reserve, ttl_ms,
--       slices, answer_ttl_ms
local seq = ARGV[1]
local slices = tonumber(ARGV[10])
local ttl_ms = tonumber(ARGV[9])
local slice_ms = ttl_ms / slices
local current = math.floor(now_ms / slice_ms)
local last = redis.call('GET', KEYS[2])
if last then
  local s, g, sl = string.match(last, '^(%d+):(%d+):(%-?%d+)$')
  if s == seq then return {tonumber(g), tonumber(sl)} end
end
local key = KEYS[1] .. current
local keep = math.ceil(ttl_ms + slice_ms)
local calls, retries = tonumber(ARGV[2]), tonumber(ARGV[3])
if calls > 0 or retries > 0 then
  redis.call('HINCRBY', key, 'c', calls)
  redis.call('HINCRBY', key, 'r', retries)
  redis.call('PEXPIRE', key, keep)
end
local returned, rslice = tonumber(ARGV[4]), tonumber(ARGV[5])
if returned > 0 and rslice > current - slices then
  local rkey = KEYS[1] .. rslice
  if redis.call('EXISTS', rkey) == 1 then redis.call('HINCRBY', rkey, 'r', -returned) end
end
local want = tonumber(ARGV[6])
local granted = 0
if want > 0 then
  local c, r = 0, 0
  for k = current - slices + 1, current do
    local v = redis.call('HMGET', KEYS[1] .. k, 'c', 'r')
    c = c + (tonumber(v[1]) or 0)
    r = r + (tonumber(v[2]) or 0)
  end
  local balance = tonumber(ARGV[8]) + tonumber(ARGV[7]) * c - r
  if balance >= 1 - 1e-9 then granted = math.min(want, math.floor(balance + 1e-9)) end
  if granted > 0 then
    redis.call('HINCRBY', key, 'r', granted)
    redis.call('PEXPIRE', key, keep)
  end
end
redis.call('SET', KEYS[2], seq .. ':' .. granted .. ':' .. current, 'PX', ARGV[11])
return {granted, current}
"""
)

RATE = (
    _NOW
    + """
-- KEYS[1]: the bucket (hash: tokens, at), KEYS[2]: this ledger's last answer
-- ARGV: seq, returned, want, capacity, tokens per ms, max_wait_ms, answer_ttl_ms
local seq = ARGV[1]
local last = redis.call('GET', KEYS[2])
if last then
  local s, g, level = string.match(last, '^(%d+):(%d+):(.+)$')
  if s == seq then return {tonumber(g), level} end
end
local capacity, per_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(h[1]), tonumber(h[2])
if tokens == nil or at == nil then tokens, at = capacity, now_ms end
if now_ms > at then
  tokens = math.min(capacity, tokens + (now_ms - at) * per_ms)
  at = now_ms
end
tokens = math.min(capacity, tokens + tonumber(ARGV[2]))
local want = tonumber(ARGV[3])
local granted = 0
if want > 0 then
  local most = math.floor(tokens + per_ms * tonumber(ARGV[6]) + 1e-9)
  if most > 0 then granted = math.min(want, most) end
end
local level = string.format('%.17g', tokens)
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', at))
-- Untouched until refilled, the bucket is full: the key may go.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
redis.call('SET', KEYS[2], seq .. ':' .. granted .. ':' .. level, 'PX', ARGV[7])
return {granted, level}
"""
)

BREAKER = (
    _NOW
    + """
-- KEYS[1]: prefix of the per-tool bucket hashes, KEYS[2]: this ledger's last answer
-- ARGV: seq, bucket_ms, buckets, answer_ttl_ms, offset_ms (server - this process), then
--       per tool: name, successes, failures, since (this process's clock, ms; '' none)
-- Returns: the server's time (ms, as a string), then per tool: calls, failures.
local seq = ARGV[1]
local bucket_ms, buckets = tonumber(ARGV[2]), tonumber(ARGV[3])
local current = math.floor(now_ms / bucket_ms)
local applied = redis.call('GET', KEYS[2]) == seq
local out = {string.format('%.17g', now_ms)}
for i = 6, #ARGV, 4 do
  local base = KEYS[1] .. ARGV[i] .. ':'
  local ok, failed = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if not applied and (ok > 0 or failed > 0) then
    local key = base .. current
    redis.call('HINCRBY', key, 's', ok)
    redis.call('HINCRBY', key, 'f', failed)
    redis.call('PEXPIRE', key, (buckets + 1) * bucket_ms)
  end
  local first = current - buckets + 1
  if ARGV[i + 3] ~= '' then
    -- From the bucket after the one it closed in: that one holds what opened it.
    local since = math.floor((tonumber(ARGV[i + 3]) + tonumber(ARGV[5])) / bucket_ms) + 1
    if since > first then first = since end
  end
  local s, f = 0, 0
  for k = first, current do
    local v = redis.call('HMGET', base .. k, 's', 'f')
    s = s + (tonumber(v[1]) or 0)
    f = f + (tonumber(v[2]) or 0)
  end
  table.insert(out, s + f)
  table.insert(out, f)
end
redis.call('SET', KEYS[2], seq, 'PX', ARGV[4])
return out
"""
)
