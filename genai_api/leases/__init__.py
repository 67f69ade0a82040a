"""Leases: which process of the fleet calls the provider for a key (CONTRACT §4).

`LocalLeases` for the memory backend (one process: the in-process `Coalescer` suffices),
`RedisLeases` for Redis (workers and replicas sharing it make one provider call per key).
"""

from genai_api.leases.base import Claim, Leases, LocalLeases
from genai_api.leases.factory import build_leases
from genai_api.leases.redis import RedisLeases

__all__ = ["Claim", "Leases", "LocalLeases", "RedisLeases", "build_leases"]
