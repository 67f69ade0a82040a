"""Every lease script, in one place (single keys: `leases/redis.py`; embedding batches:
`leases/batch.py`), and what they share: a lease is a key WITHOUT a TTL whose value carries its
deadline, ``<token>|<deadline in ms, Redis's own clock>``.

Why no TTL: under the `volatile-*` eviction policies (the one the README recommends) Redis
evicts only keys that have a TTL, so a TTL-less lease is never evicted from under its live
holder (CONTRACT §6: leases may not be lost to eviction). A lease is free once its deadline
has passed (`lease_free`), exactly as a `PX` lease was once it expired: the next claim
takes it over. The deadline is read from `redis.call('TIME')` (scripts may call it since
Redis 5; they replicate by effects), so the gateways' clocks never matter.

A lease that has a TTL anyway is held until Redis expires it, whatever its deadline says:
one written by an older gateway (`SET … PX`, no ``|<deadline>``: its whole value is the
token), or one a full Redis would not let its renewal rewrite (OOM under `maxmemory`
refuses SET, never PEXPIRE: `lease_renew` then gives it a TTL of one lease, and its next
renewal Redis accepts makes it TTL-less again). The PTTL is read only for a lease whose
deadline has passed.
"""

from __future__ import annotations

LEASE_LUA = """
local function lease_now()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease_owner(v)
  return string.match(v, '^(.*)|%d+$') or v
end
local function lease_free(key, v, now)
  if not v then
    return true
  end
  local d = string.match(v, '|(%d+)$')
  return d ~= nil and tonumber(d) <= now and redis.call('pttl', key) < 0
end
local function lease_value(token, now, ms)
  return token .. '|' .. string.format('%d', now + tonumber(ms))
end
local function lease_renew(key, token, now, ms)
  local set = redis.pcall('set', key, lease_value(token, now, ms))
  if type(set) == 'table' and set.err then
    return redis.call('pexpire', key, ms)
  end
  return 1
end
"""
"""Prepended to each lease script: `lease_now()` (ms), `lease_owner(value)` (its token),
`lease_free(key, value or false, now)`, `lease_value(token, now, lease ms)`,
`lease_renew(key, token, now, lease ms)` (1 when done, 0 when the key is gone)."""

SWEEP = (
    LEASE_LUA
    + """
local now, n = lease_now(), 0
for i = 1, #KEYS do
  local v = redis.call('get', KEYS[i])
  if v and string.match(v, '|%d+$') and lease_free(KEYS[i], v, now) then
    redis.call('del', KEYS[i])
    n = n + 1
  end
end
return n
"""
)
"""KEYS: lease keys (one slot). Deletes those whose deadline has passed (a holder that died
and whose key nobody claimed since); answers how many."""

# --- single keys (`leases/redis.py`)

# KEYS: entry, lease, waiter flag. ARGV: token, lease ms, read (1: answer the entry if any),
# sliding (ms, optional: a found entry's TTL is set back to the one it was stored with, at
# most this; see `genai_api.entry`). The read branch (a hit) is one GET and one PTTL, as
# before leases had deadlines: the clock is read only on a miss.
CLAIM = (
    """
if ARGV[3] == '1' then
  local stored = redis.call('get', KEYS[1])
  if stored then
    if tonumber(ARGV[4] or '0') > 0 then
      local full = string.match(stored, '^{"v":1,"ttl_ms":(%d+)')
      if full then
        redis.call('pexpire', KEYS[1], math.min(tonumber(full), tonumber(ARGV[4])))
      end
    end
    return {stored, redis.call('pttl', KEYS[1])}
  end
end
"""
    + LEASE_LUA  # defined past the read branch: a hit does not even create these functions
    + """
local now = lease_now()
if lease_free(KEYS[2], redis.call('get', KEYS[2]), now) then
  redis.call('set', KEYS[2], lease_value(ARGV[1], now, ARGV[2]))
  return 1
end
redis.call('set', KEYS[3], '1', 'PX', ARGV[2])
return 0
"""
)
# KEYS: leases. ARGV: lease ms, then one token per lease. Answers per lease 1 (kept: its
# deadline pushed on), 2 (re-taken: the key was gone, evicted under an allkeys-* policy or
# swept after a stall, and nobody else held it) or 0 (lost: another process holds it now).
RENEW = (
    LEASE_LUA
    + """
local now, kept = lease_now(), {}
for i = 1, #KEYS do
  local v = redis.call('get', KEYS[i])
  if not v then
    kept[i] = 2 * lease_renew(KEYS[i], ARGV[i + 1], now, ARGV[1])
  elseif lease_owner(v) == ARGV[i + 1] then
    kept[i] = lease_renew(KEYS[i], ARGV[i + 1], now, ARGV[1])
  else
    kept[i] = 0
  end
end
return kept
"""
)
# KEYS: entry, lease, waiter flag. ARGV: value, ttl ms, token, channel, storage key, carry
# (1: the message carries the value after the key and a newline), L1 channel ('' for none:
# an entry this replaces, e.g. after a max-age refresh, is dropped from every process's L1).
FILL = (
    LEASE_LUA
    + """
if ARGV[7] ~= '' and redis.call('exists', KEYS[1]) == 1 then
  redis.call('publish', ARGV[7], ARGV[5])
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
local held = redis.call('get', KEYS[2])
if held and lease_owner(held) == ARGV[3] then
  redis.call('del', KEYS[2])
end
if redis.call('del', KEYS[3]) == 1 then
  if ARGV[6] == '1' then
    return redis.call('publish', ARGV[4], ARGV[5] .. '\\n' .. ARGV[1])
  end
  return redis.call('publish', ARGV[4], ARGV[5])
end
return 0
"""
)
# KEYS: lease, waiter flag. ARGV: token, channel, storage key, and for a failed call its
# failure (`failure_bytes`), carried after a newline. Waiters are woken (to take over, or
# share the failure) only by the holder whose lease it still is.
RELEASE = (
    LEASE_LUA
    + """
local held = redis.call('get', KEYS[1])
if held and lease_owner(held) == ARGV[1] then
  redis.call('del', KEYS[1])
  if redis.call('del', KEYS[2]) == 1 then
    if ARGV[4] then
      return redis.call('publish', ARGV[2], ARGV[3] .. '\\n' .. ARGV[4])
    end
    return redis.call('publish', ARGV[2], ARGV[3])
  end
end
return 0
"""
)

# --- embedding batches (`leases/batch.py`)

# KEYS: n entries, their n leases, their n waiter flags. ARGV: token, lease ms, refresh (1:
# claim even where an entry exists, for max-age requests). Answers a letter per key, c(laimed),
# w(ait: held elsewhere, flag raised) or s(tored), then every entry's stored bytes (nil when
# none): the read and the claim in one command per slot. A lease is ``<token>|<deadline>``
# without a TTL (`genai_api.leases.lua`); one whose deadline passed is taken over.
BATCH_CLAIM = (
    LEASE_LUA
    + """
local n = #KEYS / 3
local marks, out = {}, {}
local now = nil
for i = 1, n do
  local stored = redis.call('get', KEYS[i])
  out[i + 1] = stored
  if ARGV[3] == '0' and stored then
    marks[i] = 's'
  else
    now = now or lease_now()
    if lease_free(KEYS[n + i], redis.call('get', KEYS[n + i]), now) then
      redis.call('set', KEYS[n + i], lease_value(ARGV[1], now, ARGV[2]))
      marks[i] = 'c'
    else
      redis.call('set', KEYS[2 * n + i], '1', 'PX', ARGV[2])
      marks[i] = 'w'
    end
  end
end
out[1] = table.concat(marks)
return out
"""
)
# KEYS: the flight's leases. ARGV: token, lease ms. Pushes each deadline on; a lease found
# gone (evicted under an allkeys-* policy) is taken again. Answers {kept, taken again}.
BATCH_RENEW = (
    LEASE_LUA
    + """
local now, kept, retaken = lease_now(), 0, 0
for i = 1, #KEYS do
  local v = redis.call('get', KEYS[i])
  if not v then
    retaken = retaken + lease_renew(KEYS[i], ARGV[1], now, ARGV[2])
  elseif lease_owner(v) == ARGV[1] then
    kept = kept + lease_renew(KEYS[i], ARGV[1], now, ARGV[2])
  end
end
return {kept, retaken}
"""
)
# KEYS: s entries to store, then n leases and their n waiter flags. ARGV: s, token, channel,
# then s (value, TTL ms) pairs, then the n leases' storage keys, then (optional) a failure
# (`failure_bytes`) of the flight's call. Stores, compare-and-DELs the leases and PUBLISHes
# (space-separated) the keys whose waiter flag it found up and dropped; with a failure, the
# message is those keys, a newline and the failure: their waiters share it.
BATCH_STORE_RELEASE = (
    LEASE_LUA
    + """
local s = tonumber(ARGV[1])
local n = (#KEYS - s) / 2
for i = 1, s do
  redis.call('set', KEYS[i], ARGV[2 + 2 * i], 'PX', ARGV[3 + 2 * i])
end
local woken = {}
for i = 1, n do
  local held = redis.call('get', KEYS[s + i])
  if held and lease_owner(held) == ARGV[2] then
    redis.call('del', KEYS[s + i])
  end
  if redis.call('del', KEYS[s + n + i]) == 1 then
    woken[#woken + 1] = ARGV[3 + 2 * s + i]
  end
end
if #woken == 0 then
  return 0
end
local failure = ARGV[4 + 2 * s + n]
if failure then
  return redis.call('publish', ARGV[3], table.concat(woken, ' ') .. '\\n' .. failure)
end
return redis.call('publish', ARGV[3], table.concat(woken, ' '))
"""
)
