"""Savings counters in Redis, shared by every worker and replica, applied exactly once.

Each flush of a process's batch is one Lua script: every `HINCRBY` of the batch, or none.
Scripts run atomically, and a per-writer sequence number makes a retried batch a no-op when
its first attempt did reach Redis (a timeout after Redis applied it but before it answered),
so a retry never counts twice. Integers only (`money` has why): a Lua number is a double,
but the script never does arithmetic on counters - `HINCRBY` adds in C with 64 bits.

Layout (`{ns}` = `CACHE_NAMESPACE`)::

    {ns}:stats:total                 hash  counters + `since` (unix s of the first write)
    {ns}:stats:models                set   model names that have a hash
    {ns}:stats:model:{model}         hash  counters of one model
    {ns}:stats:minute:{unix s}       hash  one minute, expires a day after it ends
    {ns}:stats:hour:{unix s}         hash  one hour, expires 30 days after it ends
    {ns}:stats:writer:{id}           str   the last batch applied by one process (a day)

On a Redis Cluster every one of them carries the hash tag ``{<ns>:stats}`` in place of
``stats`` (``genai:{genai:stats}:total``): they share a slot, so one script still applies a
whole batch atomically and a read sees one consistent state, all on one node. A flush is one
small script per process every half second, so that node carries no load worth spreading
(`docs/cluster.md` has the figures).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from redis.asyncio.cluster import RedisCluster

from genai_api.savings.backends import FIELDS, INTERVALS, Batch, Interval, Totals
from genai_api.store.cluster_client import ClusterScript

WRITER_TTL = 86_400

# KEYS[1] = the writer's key; ARGV = seq, ttl, then (op, key index, a, b) groups:
# h = HINCRBY key a b, n = HSETNX key a b, s = SADD key a, x = EXPIREAT key a.
_APPLY = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = tonumber(ARGV[1])
if seq <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 3, #ARGV, 4 do
  local op, key, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'h' then redis.call('HINCRBY', key, a, b)
  elseif op == 'n' then redis.call('HSETNX', key, a, b)
  elseif op == 's' then redis.call('SADD', key, a)
  elseif op == 'x' then redis.call('EXPIREAT', key, a)
  end
end
return 1
"""


def _ints(raw: dict[Any, Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in FIELDS:
            out[name] = int(value)
    return out


class _Script:
    """KEYS and ARGV of one script call, keys numbered as they are first used."""

    def __init__(self, first_key: str, *args: str | int) -> None:
        self.keys = [first_key]
        self.index: dict[str, int] = {first_key: 1}
        self.args: list[str | int] = list(args)

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

    def _bucket_key(self, interval: Interval, start: int) -> str:
        return f"{self.prefix}:{interval.name}:{start}"

    async def apply(self, batch: Batch, now: float) -> None:
        """Apply `batch` once: a batch whose `seq` this writer already applied is skipped."""
        total = f"{self.prefix}:total"
        script = _Script(f"{self.prefix}:writer:{self.writer}", batch.seq, WRITER_TTL)
        for name, n in batch.totals.items():
            script.op("h", total, name, n)
        script.op("n", total, "since", int(now))
        for model, counts in batch.models.items():
            script.op("s", f"{self.prefix}:models", model)
            for name, n in counts.items():
                script.op("h", f"{self.prefix}:model:{model}", name, n)
        for interval_name, buckets in batch.buckets.items():
            interval = INTERVALS[interval_name]
            for start, counts in buckets.items():
                key = self._bucket_key(interval, start)
                for name, n in counts.items():
                    script.op("h", key, name, n)
                # A fixed time after the bucket ends, however often it is written.
                script.op("x", key, start + interval.seconds + interval.window)
        await self._apply(keys=script.keys, args=script.args)

    async def read(self) -> Totals:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self.prefix}:total")
            pipe.smembers(f"{self.prefix}:models")
            total, members = await pipe.execute()
        models = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        per_model: dict[str, Counter[str]] = {}
        if models:
            async with self.client.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.hgetall(f"{self.prefix}:model:{model}")
                raws = await pipe.execute()
            per_model = {m: _ints(raw) for m, raw in zip(models, raws, strict=True)}
        since = total.get(b"since") or total.get("since")
        return Totals(float(since) if since else None, _ints(total), per_model)

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(self._bucket_key(interval, start))
            return [_ints(raw) for raw in await pipe.execute()]
