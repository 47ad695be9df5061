"""The Lua scripts of RedisStore (private).

Each script runs atomically on the server, so the read of a record and the write that
depends on it cannot interleave with another client's. A record is a hash:

- ``v``: the record format version, ``"1"``
- ``fp``: fingerprint, ``ow``: owner, ``st``: ``"in_progress"`` or ``"done"``
- ``exp``: ``expires_at`` on the writer's wall clock (seconds, informational: the key's
  PX expiry, kept by Redis, is what ends the record)
- ``res`` and ``nsr``: result JSON and not-stored reason, absent when ``None``
"""

from __future__ import annotations

__all__ = ["CLAIM", "COMPLETE", "FORMAT_VERSION", "RELEASE"]

FORMAT_VERSION = "1"

#: KEYS: key. ARGV: fingerprint, owner, expires_at, claim ttl in ms.
#: Returns 0 when claimed, else the standing record's HGETALL list.
CLAIM = """
local cur = redis.call('HGETALL', KEYS[1])
if #cur > 0 then
    return cur
end
redis.call('HSET', KEYS[1], 'v', '1', 'fp', ARGV[1], 'st', 'in_progress',
           'ow', ARGV[2], 'exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""

#: KEYS: key. ARGV: owner, expires_at, ttl in ms ('0': drop the record),
#: has result ('1'/'0'), result, has reason ('1'/'0'), reason. Returns 1 or 0.
COMPLETE = """
if redis.call('HGET', KEYS[1], 'ow') ~= ARGV[1]
        or redis.call('HGET', KEYS[1], 'st') ~= 'in_progress' then
    return 0
end
if ARGV[3] == '0' then
    redis.call('DEL', KEYS[1])
    return 1
end
redis.call('HSET', KEYS[1], 'st', 'done', 'exp', ARGV[2])
if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'res', ARGV[5])
else
    redis.call('HDEL', KEYS[1], 'res')
end
if ARGV[6] == '1' then
    redis.call('HSET', KEYS[1], 'nsr', ARGV[7])
else
    redis.call('HDEL', KEYS[1], 'nsr')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: KEYS: key. ARGV: owner. Returns 1 when the owner's claim was dropped, else 0.
RELEASE = """
if redis.call('HGET', KEYS[1], 'ow') == ARGV[1]
        and redis.call('HGET', KEYS[1], 'st') == 'in_progress' then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""
