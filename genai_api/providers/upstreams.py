"""Which upstreams a models table calls: one per distinct (base URL, key), each named.

Models without an upstream of their own go to the default one (`OPENAI_BASE_URL` with
`OPENAI_API_KEY`). A model with a `base_url` is called with the key its `api_key_env`
variable holds, or with none at all: `OPENAI_API_KEY` goes to `OPENAI_BASE_URL` and
nowhere else. Models that name the same URL and the same key share one upstream (one
connection pool, one `UPSTREAM_CONCURRENCY`).

Each upstream has a name for `/metrics` and the start-up log: `default`, or its URL's
host and port (with the path, then the key's variable, added only when two upstreams would
otherwise share a name). Names come from the models file, so the label stays bounded.

    default, routes = plan(table, settings, environment())
    routes["llama-3.1-8b"].name   # 'vllm:8000'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from genai_api.models.table import ModelInfo
from genai_api.settings import Settings

DEFAULT = "default"
OPENAI_URL = "https://api.openai.com/v1"  # the SDK's own default


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One upstream to build: where it is and what key (if any) it is sent."""

    name: str
    base_url: str | None  # None: OPENAI_BASE_URL unset (the SDK's default)
    key: str | None = field(repr=False)  # None: called without a key
    key_env: str | None  # the variable the key came from, for the log
    default: bool = False

    @property
    def shown_url(self) -> str:
        """The URL for a log line: scheme, host, port and path only (no query, no userinfo)."""
        url = urlsplit(self.base_url or OPENAI_URL)
        host = url.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{url.port}" if url.port is not None else ""
        return f"{url.scheme}://{host}{port}{url.path}"


def plan(
    models: Iterable[ModelInfo], settings: Settings, environ: Mapping[str, str]
) -> tuple[UpstreamSpec, dict[str, UpstreamSpec]]:
    """The default upstream, and the upstream of each model that has one of its own.

    `environ` holds the `api_key_env` variables (checked to be set by the models file)."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    default = UpstreamSpec(
        DEFAULT, settings.openai_base_url, key, "OPENAI_API_KEY" if key else None, default=True
    )
    found: dict[tuple[str, str | None], UpstreamSpec] = {_identity(default): default}
    names = {DEFAULT}
    routes: dict[str, UpstreamSpec] = {}
    for info in models:
        if not info.own_upstream:
            continue
        base_url = info.base_url if info.base_url is not None else settings.openai_base_url
        key_env = info.api_key_env
        spec = UpstreamSpec("", base_url, environ.get(key_env) if key_env else None, key_env)
        same = found.get(_identity(spec))
        if same is None:
            same = found[_identity(spec)] = UpstreamSpec(
                _name(spec, names), spec.base_url, spec.key, spec.key_env
            )
            names.add(same.name)
        routes[info.name] = same
    return default, routes


def _identity(spec: UpstreamSpec) -> tuple[str, str | None]:
    return (spec.base_url or OPENAI_URL).rstrip("/"), spec.key


def _name(spec: UpstreamSpec, taken: set[str]) -> str:
    """`host:port`, made unique with the path, then the key's variable, then a number."""
    url = urlsplit(spec.base_url or OPENAI_URL)
    netloc = url.netloc
    keyed = f"{netloc} ({spec.key_env or 'no key'})"
    for name in (netloc, netloc + url.path.rstrip("/"), keyed):
        if name not in taken:
            return name
    n = 2
    while f"{netloc}#{n}" in taken:
        n += 1
    return f"{netloc}#{n}"
