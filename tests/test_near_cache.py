"""The L1's LRU on its own: byte bounds, hold time (an injected clock), the epoch race."""

from __future__ import annotations

from genai_api.store.factory import build_store
from genai_api.store.near import NearStore
from genai_api.store.near_cache import NearCache
from genai_api.store.redis import RedisStore
from tests.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _entry(i: int, size: int) -> tuple[str, bytes]:
    """A key and a value that cost `size` bytes together."""
    key = f"k{i:03d}"
    return key, b"x" * (size - len(key))


def test_holds_within_its_byte_bound_dropping_the_least_recently_used() -> None:
    l1 = NearCache(64 * 100, 60)  # an entry may take 100 bytes
    for i in range(64):
        assert l1.put(*_entry(i, 100), l1.epoch)
    assert l1.size == 6400 and len(l1) == 64
    assert l1.get("k000") is not None  # now the most recently used
    assert l1.put(*_entry(64, 100), l1.epoch)
    assert l1.size <= 6400 and len(l1) == 64
    assert l1.get("k001") is None  # the least recently used went
    assert l1.get("k000") is not None and l1.get("k064") is not None


def test_replacing_a_key_counts_its_bytes_once() -> None:
    l1 = NearCache(64 * 100, 60)
    l1.put("a", b"1" * 50, l1.epoch)
    l1.put("a", b"2" * 20, l1.epoch)
    assert l1.size == 21 and l1.get("a") == b"2" * 20


def test_an_entry_over_a_64th_of_the_total_is_not_held() -> None:
    l1 = NearCache(64 * 100, 60)
    assert not l1.put(*_entry(1, 101), l1.epoch)
    assert l1.put(*_entry(2, 100), l1.epoch)
    assert len(l1) == 1 and l1.size == 100


def test_an_entry_is_answered_for_hold_seconds_after_it_was_put() -> None:
    clock = Clock()
    l1 = NearCache(1 << 20, 2.0, clock=clock)
    l1.put("a", b"entry", l1.epoch)
    clock.now += 1.9
    assert l1.get("a") == b"entry"  # reading does not extend the hold
    clock.now += 0.1
    assert l1.get("a") is None
    assert l1.size == 0 and len(l1) == 0


def test_a_read_that_started_before_an_invalidation_is_not_inserted() -> None:
    l1 = NearCache(1 << 20, 60)
    before = l1.epoch  # a reader's GET goes out...
    l1.clear()  # ...a DELETE /v1/cache lands meanwhile...
    assert not l1.put("a", b"old", before)  # ...so what it read is dropped
    assert l1.get("a") is None
    before = l1.epoch
    l1.discard("other")  # any key's invalidation: reads in flight do not insert
    assert not l1.put("a", b"old", before)
    assert l1.put("a", b"new", l1.epoch) and l1.get("a") == b"new"


def test_discard_and_clear_forget_entries() -> None:
    l1 = NearCache(1 << 20, 60)
    for key in ("a", "b", "c"):
        l1.put(key, b"v", l1.epoch)
    l1.discard("a")
    assert l1.get("a") is None and l1.get("b") == b"v" and l1.size == 4
    l1.clear()
    assert len(l1) == 0 and l1.size == 0


def test_zero_bytes_or_seconds_disables_it() -> None:
    for l1 in (NearCache(0, 2.0), NearCache(1 << 20, 0)):
        assert not l1.enabled
        assert not l1.put("a", b"v", l1.epoch)
        assert l1.get("a") is None


def test_the_factory_puts_an_l1_in_front_of_redis_only_when_enabled() -> None:
    redis = make_settings(cache_backend="redis", redis_url="redis://127.0.0.1:1/0")
    store = build_store(redis)
    assert isinstance(store, NearStore) and store.channel == f"{redis.cache_namespace}:l1"
    assert store.l1.max_bytes == 16 * 1024 * 1024 and store.l1.hold_seconds == 2.0
    assert isinstance(build_store(redis.model_copy(update={"cache_l1_max_bytes": 0})), RedisStore)
    assert isinstance(build_store(redis.model_copy(update={"cache_l1_seconds": 0})), RedisStore)
    assert build_store(make_settings(cache_backend="memory")).name == "memory"


def test_an_entry_is_not_held_past_its_expiry_in_redis() -> None:
    clock = Clock()
    l1 = NearCache(1 << 20, 2.0, clock=clock)
    assert l1.put("short", b"v", l1.epoch, ttl=0.5)
    assert l1.put("long", b"v", l1.epoch, ttl=3600)
    assert not l1.put("gone", b"v", l1.epoch, ttl=0)
    clock.now += 0.5
    assert l1.get("short") is None and l1.get("long") == b"v"
    clock.now += 1.5
    assert l1.get("long") is None
