"""Every setting of the gateway, read once from the environment and `.env` (CONTRACT §2).

One class, built by whoever starts the app (`create_app(Settings())`), so tests build
their own and nothing reads the environment at import time. The commands build it through
`genai_api.startup.load_config`, which turns a validation error into one line per variable.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio.connection import parse_url

from genai_api.logs import redact

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[^/\s:\[\]]+)(:[0-9]{1,5})?", re.I)
_HTTP_URL = re.compile(r"https?://[^/\s]+", re.I)
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})")


def addresses(raw: str | None) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 hosts in brackets) as pairs; blanks between commas skipped.

    >>> addresses("10.0.0.1:7000, [::1]:7001")
    [('10.0.0.1', 7000), ('::1', 7001)]
    """
    out = []
    for part in (raw or "").split(","):
        found = _ADDRESS.fullmatch(part.strip())
        if found is not None:
            out.append((found.group(1).strip("[]"), int(found.group(2))))
    return out


class Settings(BaseSettings):
    """Gateway configuration; field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- cache backend
    cache_backend: Literal["memory", "redis"] = "memory"
    # One server, a Redis Cluster, or a Sentinel-guarded primary (before the fields it checks)
    redis_mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    redis_url: SecretStr | None = None
    redis_host: str = "localhost"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_db: int = Field(0, ge=0)
    # --- topology (CONTRACT §6): REDIS_MODE (above) and what each mode needs
    redis_cluster_nodes: str | None = None  # more seed nodes besides REDIS_URL's
    redis_sentinels: str | None = Field(None, validate_default=True)
    redis_sentinel_master: str = Field("mymaster", min_length=1)
    redis_sentinel_password: SecretStr | None = None
    redis_timeout: float = Field(0.2, gt=0, description="seconds per Redis operation")
    # Each process holds two pool connections for good (the lease wake-ups' and the L1's
    # subscriptions): fewer than 4 would leave commands waiting on an empty pool.
    redis_max_connections: int = Field(256, ge=4)
    redis_breaker_seconds: float = Field(
        1.0, ge=0, description="how long to stop trying Redis once the breaker opens"
    )
    redis_breaker_failures: int = Field(
        3, ge=1, description="consecutive Redis failures that open the breaker"
    )
    cache_l1_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="in-process L1 in front of Redis for single-entry hits, bytes; 0: none",
    )
    cache_l1_seconds: float = Field(
        2.0, ge=0, description="longest an L1 copy of an entry is answered after it was read"
    )
    # The vector index of models that opt in to semantic hits (models file `semantic`): a
    # Redis with the query engine (Redis 8, Redis Stack, Valkey + search); default: the
    # cache's own Redis.
    semantic_redis_url: SecretStr | None = None
    # Short, renewed every third while the holder's call is alive: a dead holder (SIGKILL,
    # OOM kill) costs its waiters about this long, not a whole upstream call's time.
    lease_seconds: float = Field(
        5.0, gt=0, le=30, description="cross-process coalescing lease, renewed while alive"
    )

    # --- cache semantics
    cache_namespace: str = Field("genai", min_length=1)
    # The bound before the default: validators see the fields declared before theirs, and a
    # default above the bound is reported on CACHE_DEFAULT_TTL (see `_within_the_bound`).
    cache_max_ttl: int = Field(2_592_000, ge=1)
    cache_default_ttl: int = Field(3600, ge=1)
    cache_nondeterministic: bool = True
    cache_variants: int = Field(
        3, ge=1, le=16, description="most answers kept per key of a sampled request"
    )
    cache_regenerate_seconds: float = Field(
        120.0, ge=0, description="a repeat from the same requester within this is a regenerate"
    )
    cache_scope: Literal["tenant", "shared"] = "tenant"
    tenant_hash_secret: SecretStr | None = None
    models_file: Path | None = None

    # --- provider
    provider: Literal["openai", "mock"] | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    upstream_concurrency: int = Field(64, ge=1)
    upstream_timeout: float = Field(120.0, gt=0)
    upstream_max_retries: int = Field(0, ge=0, le=5)
    upstream_http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    stream_finish_on_disconnect: bool = True
    mock_latency_ms: float = Field(0.0, ge=0)

    # --- access and limits
    gateway_api_keys: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    cors_allow_origins: str | None = None  # after the keys: `*` is checked against them
    metrics_require_admin: bool = False
    max_request_bytes: int = Field(8_388_608, ge=1024)
    # Pass-through bodies streamed upstream (file uploads: OpenAI takes 512 MB per file, plus
    # the multipart framing); never below MAX_REQUEST_BYTES.
    max_upload_bytes: int = Field(513 * 1024 * 1024, ge=1024)
    gzip_min_bytes: int = Field(
        1400, ge=0, description="gzip answers of at least this many bytes when asked; 0: never"
    )
    prompts_dir: Path = Path("prompts")
    cache_warm_file: Path | None = None
    log_level: str = "INFO"  # a standard level name, upper-cased when read
    log_format: Literal["text", "json"] = "text"  # json: one object per line (log shippers)

    @field_validator(
        "cache_backend",
        "cache_scope",
        "provider",
        "upstream_http_client",
        "log_format",
        "redis_mode",
        mode="before",
    )
    @classmethod
    def _a_choice_in_any_case(cls, value: object, info: ValidationInfo) -> object:
        # `Redis`, `MOCK` and `Shared` mean what they say, as they did for CACHE_BACKEND only.
        if not isinstance(value, str):
            return value
        choice = value.strip().lower()
        if info.field_name == "cache_backend" and choice == "local":
            return "memory"
        if info.field_name == "provider" and not choice:
            return None  # `PROVIDER=` as copied from .env.example: chosen by OPENAI_API_KEY
        return choice

    @field_validator("log_level", mode="before")
    @classmethod
    def _a_level_name(cls, value: object) -> object:
        # Unchecked, `LOUD` failed later in logging's dictConfig with "Unable to configure
        # root logger", naming neither the variable nor the value.
        if isinstance(value, str) and value.strip().upper() in logging.getLevelNamesMapping():
            return value.strip().upper()
        raise ValueError(f"must be one of {', '.join(_LEVELS)}, in any case")

    @field_validator("redis_url", "semantic_redis_url")
    @classmethod
    def _a_redis_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Checked here, not when the pool is built: in a worker's lifespan a bad URL was a
        # traceback and "Application startup failed", once per worker.
        url = value.get_secret_value() if value is not None else ""
        if url:
            try:
                parts = parse_url(url)
            except ValueError as exc:  # its messages name the part, never the password
                raise ValueError(redact(str(exc))) from None
            if info.data.get("redis_mode") == "cluster":
                if "path" in parts:
                    raise ValueError("a cluster node is reached over TCP, not a unix:// socket")
                if int(parts.get("db") or 0):
                    raise ValueError("a cluster has database 0 only: end the URL with /0")
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinels")
    @classmethod
    def _host_port_list(cls, value: str | None, info: ValidationInfo) -> str | None:
        parts = [p.strip() for p in (value or "").split(",") if p.strip()]
        bad = next((p for p in parts if not _port_ok(_ADDRESS.fullmatch(p))), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not host:port (a comma-separated list of them)")
        mode = info.data.get("redis_mode")
        if info.field_name == "redis_sentinels" and mode == "sentinel" and not parts:
            raise ValueError("REDIS_MODE=sentinel needs the sentinels, as host:port,host:port")
        if info.field_name == "redis_cluster_nodes" and parts and mode != "cluster":
            raise ValueError("is for REDIS_MODE=cluster only")
        return ",".join(parts) or None

    @field_validator("redis_db")
    @classmethod
    def _db_zero_in_a_cluster(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("redis_mode") == "cluster":
            raise ValueError("must be 0 with REDIS_MODE=cluster (a cluster has database 0 only)")
        return value

    @field_validator("gateway_api_keys")
    @classmethod
    def _keys_when_set(cls, value: SecretStr | None) -> SecretStr | None:
        # `GATEWAY_API_KEYS= , ` meant keys and would have opened the gateway to anyone.
        raw = value.get_secret_value() if value is not None else ""
        if raw.strip() and not any(k.strip() for k in raw.split(",")):
            raise ValueError("holds commas but no key; leave it empty for an open gateway")
        return value

    @field_validator("cache_default_ttl")
    @classmethod
    def _within_the_bound(cls, value: int, info: ValidationInfo) -> int:
        # A default above the bound was silently cut to it at every store: refuse the
        # contradiction instead of guessing which of the two the operator meant.
        bound = info.data.get("cache_max_ttl")
        if isinstance(bound, int) and value > bound:
            raise ValueError(f"must be at most CACHE_MAX_TTL ({bound})")
        return value

    @field_validator("admin_api_key")
    @classmethod
    def _not_a_client_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # The admin key is not a client key (README): one key that is both would be read as
        # the admin's on admin routes and as a tenant's elsewhere.
        keys = info.data.get("gateway_api_keys")
        if value is not None and isinstance(keys, SecretStr):
            admin = value.get_secret_value().strip()
            if admin and admin in (k.strip() for k in keys.get_secret_value().split(",")):
                raise ValueError("must not be one of GATEWAY_API_KEYS")
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _origins(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        origins = [o.strip() for o in value.split(",") if o.strip()]
        if not origins:
            return None  # `CORS_ALLOW_ORIGINS=` as copied from .env.example: CORS off
        for origin in origins:
            # What a browser sends in `Origin`: scheme://host[:port], no path, no slash. A
            # configured `https://app.example/` would never match and fail silently.
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], with no path or "
                    "trailing slash"
                )
        keys = info.data.get("gateway_api_keys")
        if "*" in origins and isinstance(keys, SecretStr) and keys.get_secret_value().strip():
            # Any page on the web could then call with a key it got hold of; an open gateway
            # is open anyway. Name the front-ends' origins instead.
            raise ValueError("'*' is allowed only when GATEWAY_API_KEYS is unset; name the origins")
        return ",".join(origins)

    @field_validator("openai_base_url", mode="before")
    @classmethod
    def _an_http_url(cls, value: object) -> object:
        # `OPENAI_BASE_URL=` as copied from .env.example meant the default; the SDK took ''
        # as a base and every provider call failed.
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not _HTTP_URL.match(value.strip()):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip() if isinstance(value, str) else value

    @field_validator("cache_namespace")
    @classmethod
    def _a_key_prefix(cls, value: str) -> str:
        if value and not _NAMESPACE.fullmatch(value):
            # ':' separates a storage key's parts and '*?[' are glob characters in the
            # patterns DELETE /v1/cache scans with: either could reach another namespace.
            raise ValueError("may hold only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("models_file", "cache_warm_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # `MODELS_FILE=` as copied from .env.example means "none", not the current directory.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def resolved_provider(self) -> Literal["openai", "mock"]:
        """`openai` when a key is configured, else the offline mock (CONTRACT §2)."""
        if self.provider is not None:
            return self.provider
        return "openai" if self.openai_api_key else "mock"

    @property
    def cluster(self) -> bool:
        """Keys carry hash tags (CONTRACT §6): the cache is a Redis Cluster."""
        return self.cache_backend == "redis" and self.redis_mode == "cluster"

    @property
    def client_keys(self) -> tuple[str, ...]:
        """Client API keys from the comma-separated `GATEWAY_API_KEYS`; empty = open gateway."""
        if self.gateway_api_keys is None:
            return ()
        raw = self.gateway_api_keys.get_secret_value()
        return tuple(k.strip() for k in raw.split(",") if k.strip())

    @property
    def upload_limit(self) -> int:
        """The body limit of pass-through routes, whose bodies are streamed, not held."""
        return max(self.max_upload_bytes, self.max_request_bytes)

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Origins whose pages may call the API (`*`: any); empty = CORS off."""
        return tuple(self.cors_allow_origins.split(",")) if self.cors_allow_origins else ()

    @property
    def command_key(self) -> str | None:
        """The client key the gateway's own commands send (`warm`'s default, `stats` without
        an admin key): the first of `GATEWAY_API_KEYS`; none on an open gateway."""
        return self.client_keys[0] if self.client_keys else None


def _port_ok(found: re.Match[str] | None) -> bool:
    return found is not None and 1 <= int(found.group(2)) <= 65535
