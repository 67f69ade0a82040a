"""Two (or three) live fake upstreams for the per-model upstream tests, and a gateway on them.

`openai` stands for OpenAI (the default upstream, `OPENAI_BASE_URL` + `OPENAI_API_KEY`),
`vllm` for a vLLM server with a key of its own, `tei` for an embeddings server without a
key. Each is `bench.fake_upstream` in a process of its own: it insists on its bearer, and
records the bearers and model names it was sent. They are started once per test module
and reset before each test: a test module imports `fakes_fixture` and `upstreams_fixture`
and asks for `upstreams`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from genai_api.settings import Settings
from tests.conftest import make_settings
from tests.processes import Service, fake_upstream, set_mode, upstream_calls

# Not `sk-...`: the log's redaction would mask those, and hide a line that printed one.
OPENAI_KEY = "default-Xq7RbT29LmUdkW"
VLLM_KEY = "vllm-J3nPwE58sYaGhC"
VLLM_KEY_ENV = "TEST_VLLM_API_KEY"
KEYS = (OPENAI_KEY, VLLM_KEY)

LLAMA_WIRE = "meta-llama/Llama-3.1-8B-Instruct"
BGE_WIRE = "BAAI/bge-large-en-v1.5"


@dataclass
class Fakes:
    openai: Service
    vllm: Service
    tei: Service

    def all(self) -> tuple[Service, Service, Service]:
        return self.openai, self.vllm, self.tei

    def reset(self) -> None:
        for service in self.all():
            httpx.post(service.url + "/reset", timeout=5).raise_for_status()
            set_mode(service, fail=None, hang=False, cut=False, retry_after=None)

    def models_file(self, tmp_path: Path, extra: str = "") -> Path:
        """Llama on vLLM (its key, an alias, falling back to gpt-4o-mini on OpenAI), and an
        embeddings model on TEI (no key, an alias, falling back to OpenAI's)."""
        path = tmp_path / "models.toml"
        path.write_text(
            f"""
[models."llama-3.1-8b"]
base_url = "{self.vllm.url}/v1"
api_key_env = "{VLLM_KEY_ENV}"
upstream_model = "{LLAMA_WIRE}"
fallbacks = ["gpt-4o-mini"]
input_per_million = "0.05"
output_per_million = "0.10"

[models.bge]
base_url = "{self.tei.url}/v1"
upstream_model = "{BGE_WIRE}"
tokenizer = "cl100k_base"
input_per_million = "0.01"
fallbacks = ["text-embedding-3-small"]
{extra}"""
        )
        return path

    def settings(self, tmp_path: Path, extra: str = "", **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "openai_base_url": self.openai.url + "/v1",
            "openai_api_key": OPENAI_KEY,
            "models_file": self.models_file(tmp_path, extra),
            "upstream_http_client": "aiohttp",
        }
        values.update(overrides)
        return make_settings(**values)


def calls(service: Service) -> dict[str, Any]:
    return upstream_calls(service)


@pytest.fixture(scope="module", name="fakes")
def fakes_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    workdir = tmp_path_factory.mktemp("fakes")
    started: list[Service] = []
    try:
        for key, models in (
            (OPENAI_KEY, ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "whisper-1"]),
            (VLLM_KEY, [LLAMA_WIRE]),
            (None, None),  # TEI: no key, and no model list (404)
        ):
            started.append(fake_upstream(workdir, 0, api_key=key, models=models))
        yield Fakes(*started)
    finally:
        for service in started:
            service.stop()


@pytest.fixture(name="upstreams")
def upstreams_fixture(fakes: Fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fakes:
    """The module's fakes, reset, with vLLM's key in the environment (and no stray .env)."""
    fakes.reset()
    monkeypatch.setenv(VLLM_KEY_ENV, VLLM_KEY)
    monkeypatch.chdir(tmp_path)
    return fakes
