"""Savings counters in Redis, shared by every worker and replica, applied exactly once.

Each flush of a process's batch is one Lua script: every `HINCRBY` of the batch, or none.
Scripts run atomically, and a per-writer sequence number makes a retried batch a no-op when
its first attempt did reach Redis (a timeout after Redis applied it but before it answered),
so a retry never counts twice. Integers only (`money` has why): a Lua number is a double,
but the script never does arithmetic on counters - `HINCRBY` adds in C with 64 bits, and
the restore below compares decimal strings, never numbers.

Layout (`{ns}` = `CACHE_NAMESPACE`)::

    {ns}:stats:total                 hash  counters + `since` (unix s of the first write) + `_e`
    {ns}:stats:models                set   model names that have a hash
    {ns}:stats:model:{model}         hash  counters of one model + `_e`
    {ns}:stats:minute:{unix s}       hash  one minute, deleted a day after it ends
    {ns}:stats:hour:{unix s}         hash  one hour, deleted 30 days after it ends
    {ns}:stats:writer:{id}           str   the last batch applied by one process (a day)
    {ns}:stats:index                 zset  the minute, hour and writer keys by deletion time

On a Redis Cluster every one of them carries the hash tag ``{<ns>:stats}`` in place of
``stats`` (``genai:{genai:stats}:total``): they share a slot, so one script still applies a
whole batch atomically and a read sees one consistent state, all on one node. A flush is one
small script per process every half second, so that node carries no load worth spreading
(`docs/cluster.md` has the figures).

Eviction (`docs/cluster.md`, "Memory and eviction"). No stats key has a TTL: under a
`volatile-*` policy, which evicts only keys with a TTL (every cache entry has one), Redis never
evicts them. The time buckets and writer keys are deleted by the script itself instead of by
expiry: each write lists the key in `index` by the time it is due, and every flush deletes
what is due (at most `PRUNE` keys a flush), so memory stays bounded as it was with `EXPIREAT`.
Under an `allkeys-*` policy nothing is safe from eviction, so the script

- reads, on every call (a flush every half second, also when there is nothing to add, and
  every read), every key a reader needs: the totals, the model set and every model hash, so
  LRU/LFU sees them as the hottest keys there are; and
- finds an evicted hash and puts it back. The totals and each model hash carry a marker field,
  `_e`, a fresh token set when the hash is created. Each process keeps what its last call
  returned (`seen`: values and markers) and sends it with the next call; where the marker in
  Redis differs, the hash was evicted since (and perhaps recreated by another process), and
  the script first puts back what this process saw, then applies the batch. A recreated hash
  keeps, per counter, how much was put back (`b:<field>`), so a view adds only what it knows
  beyond that and two views of the same counts add them once (`merge`). The totals are then
  raised to the sum of the models (each batch adds to both alike).

So a restore never counts more than happened, a reader never sees its counts go backwards,
and once every running process has flushed after an eviction the counts are exact again,
unless the same hash was evicted once more before that (what was added in between is lost)
or the process that wrote last is gone. The minute/hour buckets and writer keys are not put
back: under `allkeys-*` the series loses what evicted buckets held, and a writer key evicted
between a lost answer and its retry lets that batch count twice. `volatile-lru` keeps all of
it exact.

An operator resets the stats by deleting the keys and setting `{ns}:stats:reset` to a new
value: a process that sees it change forgets its view instead of putting it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from genai_api.savings.backends import FIELDS, INTERVALS, Batch, Interval, Totals
from genai_api.store.cluster_client import ClusterScript

log = logging.getLogger("genai_api.accounting")

WRITER_TTL = 86_400
PRUNE = 64  # due keys deleted per flush, at most: a flush stays a small script
MARK = "_e"  # the marker field: a token set when a hash is (re)created
_VIEW = frozenset((*FIELDS, "since", MARK))  # what a view keeps (not the `b:` base fields)
RESTORE_WARNING_EVERY = 60.0  # seconds between two "restored" warnings of one process

# KEYS = writer, total, model set, index, reset, then keys of the batch's ops.
# ARGV = seq, now, token, model-key prefix, writer ttl, number of hashes seen, the reset value
# seen ('' = none), then per hash
# seen: model name ('' = totals), marker, n fields, n (field, value) pairs; then the batch's
# ops, (op, key index, a, b) groups: h = HINCRBY key a b, n = HSETNX key a b, s = SADD key a,
# x = index key a (the time it is due; PERSIST drops a TTL an older version set).
# Returns {applied, hashes restored, totals, {model, model's hash, ...}, reset}, each hash as
# one string of fields and values.
_APPLY = """
local writer, total, models, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seq, now, token, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local function key_of(name)
  if name == '' then return total end
  return prefix .. name
end
-- a > b for decimal strings of non-negative integers (exact beyond 2^53, unlike tonumber)
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
-- Raise counter `field` of `key` by what the view `w` knows beyond the hash's base: the part
-- of the counts from before the hash was recreated that earlier merges already put back. A
-- recreated hash holds base + what was added since, so each merge adds only what is new to
-- it, and merging the same view twice adds nothing. HINCRBY takes the strings exactly.
local function merge(key, field, w)
  local base = redis.call('HGET', key, 'b:' .. field) or '0'
  if gt(w, base) then
    redis.call('HINCRBY', key, field, w)
    if base ~= '0' then redis.call('HINCRBY', key, field, '-' .. base) end
    redis.call('HSET', key, 'b:' .. field, w)
  end
end
-- a + b for decimal strings of non-negative integers, digit by digit (exact, as `gt`)
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end
local function counter(field)
  return field ~= '_e' and field ~= 'since' and field:sub(1, 2) ~= 'b:'
end
local restored = 0
local set_gone = redis.call('EXISTS', models) == 0
-- An operator reset (DEL the stats keys, then SET the reset key): views from before it are void.
local reset = redis.call('GET', KEYS[5])
reset = reset and reset ~= ARGV[7]
local i = 8
for _ = 1, tonumber(ARGV[6]) do
  local name, mark, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = key_of(name)
  local cur = redis.call('HGET', key, '_e')
  if not cur and redis.call('EXISTS', key) == 1 then
    -- written by a version without markers, never evicted since: mark it, nothing to raise
    redis.call('HSET', key, '_e', token)
  elseif cur ~= mark and not reset then
    -- evicted since this process saw it (and maybe recreated since): put back what it saw
    if not cur then redis.call('HSET', key, '_e', token) end
    for j = i + 3, i + 1 + 2 * n, 2 do
      local field, value = ARGV[j], ARGV[j + 1]
      if field == 'since' then
        local have = redis.call('HGET', key, field)
        if not have or gt(have, value) then redis.call('HSET', key, field, value) end
      else
        merge(key, field, value)
      end
    end
    if name ~= '' then redis.call('SADD', models, name) end
    restored = restored + 1
  elseif set_gone and name ~= '' and not reset then
    redis.call('SADD', models, name)  -- the set alone was evicted
    restored = restored + 1
  end
  i = i + 3 + 2 * n
end
if restored > 0 then
  -- Every batch adds to the totals what it adds to its models, so the totals are at least
  -- the sum of the models: totals put back from an older view than model hashes that
  -- survived are raised to it. What is raised counts as put back (the base too): the sum is
  -- a lower bound of the totals' count before they were recreated plus what was added since.
  local sum = {}
  for _, name in ipairs(redis.call('SMEMBERS', models)) do
    local counts = redis.call('HGETALL', prefix .. name)
    for k = 1, #counts, 2 do
      if counter(counts[k]) then sum[counts[k]] = add(sum[counts[k]] or '0', counts[k + 1]) end
    end
  end
  for field, value in pairs(sum) do
    local was = redis.call('HGET', total, field) or '0'
    if gt(value, was) then
      redis.call('HSET', total, field, value)
      redis.call('HINCRBY', total, 'b:' .. field, value)
      if was ~= '0' then redis.call('HINCRBY', total, 'b:' .. field, '-' .. was) end
    end
  end
  if not redis.call('HGET', total, '_e') then redis.call('HSET', total, '_e', token) end
end
local applied = 0
local last = tonumber(redis.call('GET', writer) or '0')
if seq > last then
  applied = 1
  redis.call('SET', writer, ARGV[1])
  redis.call('ZADD', index, now + tonumber(ARGV[5]), writer)
  for k = i, #ARGV, 4 do
    local op, key, a, b = ARGV[k], KEYS[tonumber(ARGV[k + 1])], ARGV[k + 2], ARGV[k + 3]
    if op == 'h' then redis.call('HINCRBY', key, a, b)
    elseif op == 'n' then redis.call('HSETNX', key, a, b)
    elseif op == 's' then redis.call('SADD', key, a)
    elseif op == 'x' then
      redis.call('PERSIST', key)
      redis.call('ZADD', index, a, key)
    end
  end
  local due = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, {prune})
  if #due > 0 then
    for _, key in ipairs(due) do redis.call('DEL', key) end
    redis.call('ZREM', index, unpack(due))
  end
end
-- Each hash as one string, 'field value field value ...' (names and integers hold no space):
-- two reply elements a hash instead of two a field, for a client that parses them one by one.
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', models)) do
  out[#out + 1] = name
  out[#out + 1] = table.concat(redis.call('HGETALL', prefix .. name), ' ')
end
local totals = table.concat(redis.call('HGETALL', total), ' ')
return {applied, restored, totals, out, redis.call('GET', KEYS[5])}
""".replace("{prune}", str(PRUNE))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(joined: Any) -> dict[str, str]:
    """A hash the script sent as one string of space-separated fields and values."""
    flat = _text(joined).split()
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _ints(raw: dict[str, str]) -> Counter[str]:
    return Counter({name: int(value) for name, value in raw.items() if name in FIELDS})


class _Script:
    """KEYS and ARGV of one script call, keys numbered as they are first used."""

    def __init__(self, keys: list[str], args: list[str | int]) -> None:
        self.keys = list(keys)
        self.index: dict[str, int] = {key: n for n, key in enumerate(self.keys, 1)}
        self.args = args

    def op(self, op: str, key: str, a: str | int, b: str | int = "") -> None:
        if key not in self.index:
            self.keys.append(key)
            self.index[key] = len(self.keys)
        self.args += [op, self.index[key], a, b]


class RedisStats:
    name = "redis"

    def __init__(self, client: Any, namespace: str) -> None:
        """`client`: a `redis.asyncio.Redis`, or a `RedisCluster` (then the keys are tagged)."""
        self.client = client
        cluster = isinstance(client, RedisCluster)
        self.prefix = f"{namespace}:{{{namespace}:stats}}" if cluster else f"{namespace}:stats"
        self.writer = uuid.uuid4().hex[:16]  # this process's recorder
        self._apply = ClusterScript(client, _APPLY) if cluster else client.register_script(_APPLY)
        # What the last script call returned, per hash ('' = totals): raw fields, marker `_e`
        # included. Sent back with every call so that an evicted hash is restored from it.
        self.seen: dict[str, dict[str, str]] = {}
        self.reset = ""  # the value of the reset key when this process last looked
        self.restores = 0  # hashes this process found evicted (or restored by another) and raised
        self._warned = 0.0
        # One script call at a time: a read and a flush of this process overlapping could
        # answer out of order, and an older answer would replace a newer view.
        self._one_at_a_time = asyncio.Lock()

    def _bucket_key(self, interval: Interval, start: int) -> str:
        return f"{self.prefix}:{interval.name}:{start}"

    def _script(self, seq: int, now: float) -> _Script:
        keys = [
            f"{self.prefix}:writer:{self.writer}",
            f"{self.prefix}:total",
            f"{self.prefix}:models",
            f"{self.prefix}:index",
            f"{self.prefix}:reset",
        ]
        args: list[str | int] = [
            seq, int(now), uuid.uuid4().hex, f"{self.prefix}:model:", WRITER_TTL,
            len(self.seen), self.reset,
        ]  # fmt: skip
        for name, raw in self.seen.items():
            fields = [(k, v) for k, v in raw.items() if k != MARK]
            args += [name, raw.get(MARK, ""), len(fields)]
            for field, value in fields:
                args += [field, value]
        return _Script(keys, args)

    async def apply(self, batch: Batch, now: float) -> None:
        """Apply `batch` once: a batch whose `seq` this writer already applied is skipped.

        An empty batch applies nothing but still restores what was evicted and refreshes
        this process's view (the recorder sends one when it has nothing to flush).
        """
        await self._call(lambda: self._batch_script(batch, now))

    def _batch_script(self, batch: Batch, now: float) -> _Script:
        script = self._script(batch.seq, now)
        total, token = script.keys[1], script.args[2]
        for name, n in batch.totals.items():
            script.op("h", total, name, n)
        if batch:
            script.op("n", total, "since", int(now))
            script.op("n", total, MARK, token)
        for model, counts in batch.models.items():
            key = f"{self.prefix}:model:{model}"
            script.op("s", script.keys[2], model)
            for name, n in counts.items():
                script.op("h", key, name, n)
            script.op("n", key, MARK, token)
        for interval_name, buckets in batch.buckets.items():
            interval = INTERVALS[interval_name]
            for start, counts in buckets.items():
                key = self._bucket_key(interval, start)
                for name, n in counts.items():
                    script.op("h", key, name, n)
                # Deleted a fixed time after the bucket ends, however often it is written.
                script.op("x", key, start + interval.seconds + interval.window)
        return script

    async def read(self) -> Totals:
        """Totals and every model's counters, read in one script: they always agree."""
        raw = await self._call(lambda: self._script(0, time.time()))
        since = raw[""].get("since")
        # A model in the set whose hash is gone (evicted before this process ever saw it) is
        # left out, not shown as zeros: it comes back once the process that saw it flushes.
        models = {name: _ints(fields) for name, fields in raw.items() if name and fields}
        return Totals(float(since) if since else None, _ints(raw[""]), models)

    async def _call(self, build: Callable[[], _Script]) -> dict[str, dict[str, str]]:
        """Run the script `build` makes from the latest view; the answer becomes the view."""
        async with self._one_at_a_time:
            script = build()
            return self._answer(await self._apply(keys=script.keys, args=script.args))

    def _answer(self, reply: list[Any]) -> dict[str, dict[str, str]]:
        restored = int(reply[1])
        # The reset key's value; a missing key is a null (None), or False from a client that
        # maps Lua's false as a RESP3 boolean.
        reset = _text(reply[4]) if isinstance(reply[4], bytes | str) else self.reset
        if reset != self.reset:  # an operator reset the stats: forget what was seen before
            self.reset = reset
            self.seen = {}
        view = {"": _pairs(reply[2])}
        flat = reply[3]
        for k in range(0, len(flat), 2):
            view[_text(flat[k])] = _pairs(flat[k + 1])
        # Keep a hash this process saw but Redis no longer has (evicted): the next call
        # puts it back. A hash Redis has replaces what was seen of it (calls are one at a
        # time, so this answer is the newest).
        for name, fields in view.items():
            if fields:
                self.seen[name] = {k: v for k, v in fields.items() if k in _VIEW}
        if restored:
            self.restores += restored
            now = time.monotonic()
            if now - self._warned >= RESTORE_WARNING_EVERY:
                self._warned = now
                log.warning(
                    "stats: %d savings hash(es) had been evicted by Redis and were restored "
                    "from this process's last view (counts may lag until every gateway has "
                    "flushed); run Redis with maxmemory-policy volatile-lru to keep them exact",
                    restored,
                )
        return view

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(self._bucket_key(interval, start))
            return [_ints(_pairs_dict(raw)) for raw in await pipe.execute()]


def _pairs_dict(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
