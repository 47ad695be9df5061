"""Lua scripts of the transport: each a step that must be atomic on the server.

A call's entry is acknowledged, answered and deleted in one step, and only by the worker
whose ``XACK`` removed it from the group's pending list: a call that two workers held
(one slow, one that claimed it) is answered once, by the first to finish. A worker
answers the calls that finished meanwhile in one script run (``FINISH``): each call's
step is the same, and a script runs atomically, so batching changes no outcome.
"""

from __future__ import annotations

__all__ = ["BURY", "FINISH", "HAND_BACK", "KEEP", "SEND"]

#: Sends a batch of calls: appends each to its tool's stream.
#: KEYS: per call, its tool's stream. ARGV: per call, the number N of its field/value
#: strings, then those N strings. Returns the number of calls appended.
SEND = """
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('XADD', KEYS[i], '*', unpack(ARGV, a + 1, a + n))
  a = a + 1 + n
end
return #KEYS
"""

#: Answers a batch of calls, each as one step.
#: KEYS: per call, its stream and its reply stream ("" for no reply).
#: ARGV: group, reply TTL ms, reply stream max length, then per call: its entry id, the
#: number N of its reply's field/value strings (0 for no reply), those N strings.
#: Returns per call 1 when this worker answered it, 0 when another had already.
FINISH = """
local out = {}
local a = 4
for i = 1, #KEYS / 2 do
  local stream, reply = KEYS[2 * i - 1], KEYS[2 * i]
  local id, n = ARGV[a], tonumber(ARGV[a + 1])
  local acked = redis.call('XACK', stream, ARGV[1], id)
  redis.call('XDEL', stream, id)
  if acked == 1 and reply ~= '' and n > 0 then
    redis.call('XADD', reply, 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, a + 2, a + 1 + n))
    redis.call('PEXPIRE', reply, ARGV[2])
  end
  out[i] = acked
  a = a + 2 + n
end
return out
"""

#: KEYS: call stream, dead-letter stream, reply stream (or "").
#: ARGV: group, entry id, reply TTL ms, max length, number N of call field/value
#: strings, the call's N strings, then the reply's field/value pairs.
#: The call moves to the dead-letter stream (with its delivery count) and its caller
#: gets the reply. Returns 1, or 0 when another worker had already settled the call.
BURY = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
local n = tonumber(ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 6, 5 + n))
if KEYS[3] ~= '' and #ARGV > 5 + n then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 6 + n))
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

#: KEYS: call stream. ARGV: group, entry id, the call's field/value pairs.
#: A stopping worker gives a call back: a fresh entry, at once readable by any worker
#: (not after claim_idle_s), and the held one acknowledged and deleted.
HAND_BACK = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
return 1
"""

#: KEYS: call stream. ARGV: group, consumer, entry ids...
#: Resets the idle time of the entries this consumer still holds (XCLAIM JUSTID does not
#: count a delivery), so a live worker's long calls are not claimed by the janitors.
#: An entry another consumer claimed meanwhile is left to it. Returns how many were kept.
KEEP = """
local kept = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
"""
