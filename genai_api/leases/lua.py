"""What every lease script shares: a lease is a key WITHOUT a TTL whose value carries its
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
