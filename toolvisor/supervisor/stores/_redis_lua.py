"""The Lua scripts of RedisStore (private).

Each script runs atomically on the server, so the read of a record and the write that
depends on it cannot interleave with another client's. A record is a hash at
``prefix + namespace + ":" + key``:

- ``v``: the record format version, ``"2"``
- ``ns``: the namespace (the application's name)
- ``fp``: fingerprint, ``ow``: owner, ``st``: ``"in_progress"``, ``"done"`` or
  ``"unknown"``
- ``exp``: ``expires_at`` on the writer's wall clock (seconds, informational: the key's
  PX expiry, kept by Redis, is what ends the record)
- ``res`` and ``nsr``: result JSON and not-stored reason, absent when ``None``

Format 1 (toolvisor before namespaces) had no ``ns`` and lived at ``prefix + key``. The
store of the namespace ``"default"`` passes that legacy key as ``KEYS[2]`` to ``CLAIM``,
``GET`` and ``FORGET``, so records written before the upgrade are still read (and
forgotten); nothing new is written there.
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "COMPLETE",
    "FORGET",
    "FORMAT_VERSION",
    "GET",
    "LEGACY_FORMAT_VERSION",
    "MARK_UNKNOWN",
    "RELEASE",
    "RENEW",
]

FORMAT_VERSION = "2"
LEGACY_FORMAT_VERSION = "1"

# The live record: KEYS[1]'s, else a format-1 record at KEYS[2] (when given). A value
# of another type at KEYS[1] makes HGETALL fail with WRONGTYPE (reported as foreign
# data); one at the legacy key is not ours and is ignored.
_READ = """
local function current()
    local cur = redis.call('HGETALL', KEYS[1])
    if #cur > 0 or KEYS[2] == nil then
        return cur
    end
    if redis.call('TYPE', KEYS[2]).ok == 'hash'
            and redis.call('HGET', KEYS[2], 'v') == '1' then
        return redis.call('HGETALL', KEYS[2])
    end
    return cur
end
"""

#: KEYS: key[, legacy key]. ARGV: fingerprint, owner, expires_at, claim ttl in ms,
#: namespace. Returns 0 when claimed, else the standing record's HGETALL list.
CLAIM = (
    _READ
    + """
local cur = current()
if #cur > 0 then
    return cur
end
redis.call('HSET', KEYS[1], 'v', '2', 'ns', ARGV[5], 'fp', ARGV[1], 'st', 'in_progress',
           'ow', ARGV[2], 'exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""
)

#: KEYS: key[, legacy key]. Returns the live record's HGETALL list (empty: none).
GET = _READ + "\nreturn current()\n"

# The claim holder's check: the caller still holds a live claim (Redis dropped it at
# its expiry otherwise).
_HELD = """
if redis.call('HGET', KEYS[1], 'ow') ~= ARGV[1]
        or redis.call('HGET', KEYS[1], 'st') ~= 'in_progress' then
    return 0
end
"""

#: KEYS: key. ARGV: owner, expires_at, ttl in ms ('0': drop the record),
#: has result ('1'/'0'), result, has reason ('1'/'0'), reason. Returns 1 or 0.
COMPLETE = (
    _HELD
    + """
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
)

#: KEYS: key. ARGV: owner, expires_at, claim ttl in ms. Returns 1 or 0.
RENEW = (
    _HELD
    + """
redis.call('HSET', KEYS[1], 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

#: KEYS: key. ARGV: owner, expires_at, ttl in ms ('0': drop the record). Returns 1 or 0.
MARK_UNKNOWN = (
    _HELD
    + """
if ARGV[3] == '0' then
    redis.call('DEL', KEYS[1])
    return 1
end
redis.call('HSET', KEYS[1], 'st', 'unknown', 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

#: KEYS: key. ARGV: owner. Returns 1 when the owner's claim was dropped, else 0.
RELEASE = (
    _HELD
    + """
redis.call('DEL', KEYS[1])
return 1
"""
)

#: KEYS: key[, legacy key]. Returns how many records were dropped. Data at KEYS[1] that
#: is not a hash is not ours: refused, not deleted.
FORGET = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
    return redis.error_reply('WRONGTYPE the key holds a ' .. kind .. ', not a record')
end
local n = redis.call('DEL', KEYS[1])
if KEYS[2] ~= nil and redis.call('TYPE', KEYS[2]).ok == 'hash'
        and redis.call('HGET', KEYS[2], 'v') == '1' then
    n = n + redis.call('DEL', KEYS[2])
end
return n
"""
