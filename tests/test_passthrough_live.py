"""The pass-through over real sockets: `genai-api serve` in front of the live fake upstream,
the openai SDK as the client. Uploads and downloads go through whole without the gateway
holding them, streams arrive as the upstream sends them, and two client keys stay apart,
across replicas too."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.processes import Service, fake_upstream, gateway

pytestmark = pytest.mark.slow

KEYS = "key-a,key-b"
LINE = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}\n'  # noqa: E501
MB = 1024 * 1024


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[Service] = []

    def upstream(self, latency_ms: float = 0) -> Service:
        service = fake_upstream(self.workdir, latency_ms)
        self.services.append(service)
        return service

    def gateway(self, upstream: Service, **env: str) -> Service:
        values = {
            "PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-upstream",
            "OPENAI_BASE_URL": upstream.url + "/v1",
            "GATEWAY_API_KEYS": KEYS,
            "CACHE_BACKEND": "memory",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        service = gateway(self.workdir, values)
        self.services.append(service)
        service.wait_ready()
        return service


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        for service in stack.services:
            service.stop()


def client(service: Service, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.url + "/v1", api_key=key, max_retries=0, timeout=60)


def peak_rss_kb(service: Service) -> int:
    """The server process's peak resident memory so far (it serves in-process: one worker)."""
    for line in Path(f"/proc/{service.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_50_mb_file_goes_up_and_comes_back_whole_without_the_gateway_holding_it(
    stack: Stack, tmp_path: Path
) -> None:
    up = stack.upstream()
    gw = stack.gateway(up)
    a = client(gw, "key-a")
    a.files.create(file=("warm.jsonl", LINE), purpose="batch")  # the path's code is loaded
    before = peak_rss_kb(gw)
    path = tmp_path / "big.bin"
    data = os.urandom(50 * MB)
    path.write_bytes(data)
    with path.open("rb") as fh:
        big = a.files.create(file=fh, purpose="assistants")
    assert big.bytes == len(data)
    digest = hashlib.sha256()
    with a.files.with_streaming_response.content(big.id) as download:
        for chunk in download.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    grown = peak_rss_kb(gw) - before
    assert grown < 16 * 1024, f"the gateway's peak RSS grew {grown} KiB for a 50 MiB round trip"
    assert client(gw, "key-b").files.list().data == []


def test_speech_is_relayed_as_the_upstream_sends_it(stack: Stack) -> None:
    up = stack.upstream(latency_ms=200)  # four chunks, 200 ms apart
    gw = stack.gateway(up)
    a = client(gw, "key-a")
    started = time.monotonic()
    arrivals: list[float] = []
    audio = b""
    with a.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hello"
    ) as speech:
        for chunk in speech.iter_bytes(chunk_size=None):
            arrivals.append(time.monotonic() - started)
            audio += chunk
    assert audio == hashlib.sha256(b"hello").digest() * 512 * 4
    # Relayed as they came: the first chunk did not wait for the last (0.6 s later upstream;
    # held back, they would arrive together).
    assert arrivals[-1] - arrivals[0] > 0.4

    events: list[tuple[float, str]] = []
    started = time.monotonic()
    body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "hi", "stream_format": "sse"}
    headers = {"Authorization": "Bearer key-a"}
    with httpx.stream("POST", gw.url + "/v1/audio/speech", json=body, headers=headers) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        for line in sse.iter_lines():
            if line.startswith("data: "):
                events.append((time.monotonic() - started, line))
    assert len(events) == 5 and '"speech.audio.done"' in events[-1][1]
    assert events[-1][0] - events[0][0] > 0.4


def test_two_tenants_cannot_reach_each_others_files_and_batches(stack: Stack) -> None:
    up = stack.upstream()
    gw = stack.gateway(up)
    a, b = client(gw, "key-a"), client(gw, "key-b")
    input_file = a.files.create(file=("in.jsonl", LINE), purpose="batch")
    b.files.create(file=("own.jsonl", LINE), purpose="batch")
    listed_by_a = [f.id for f in a.files.list()]
    assert listed_by_a == [input_file.id]
    guessed = listed_by_a[0]  # B learnt A's id somehow
    for call in (
        lambda: b.files.retrieve(guessed),
        lambda: b.files.content(guessed),
        lambda: b.files.delete(guessed),
        lambda: b.batches.create(
            input_file_id=guessed, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    calls = httpx.get(up.url + "/calls").json()["by_path"]
    assert "/v1/batches" not in calls  # B's batch never reached the upstream
    assert f"/v1/files/{guessed}" not in calls and f"/v1/files/{guessed}/content" not in calls
    batch = a.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = a.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    assert b"Fake answer" in a.files.content(done.output_file_id).content
    with pytest.raises(openai.NotFoundError):
        b.files.content(done.output_file_id)
    with pytest.raises(openai.NotFoundError):
        b.batches.retrieve(batch.id)
    assert [x.id for x in b.batches.list()] == []


@pytest.mark.redis
def test_replicas_sharing_redis_agree_on_who_owns_what(stack: Stack, redis_url: str) -> None:
    up = stack.upstream()
    shared = {
        "CACHE_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "CACHE_NAMESPACE": f"o{uuid.uuid4().hex[:10]}",
    }
    one, two = stack.gateway(up, **shared), stack.gateway(up, **shared)
    made = client(one, "key-a").files.create(file=("in.jsonl", LINE), purpose="batch")
    assert client(two, "key-a").files.retrieve(made.id).id == made.id
    assert [f.id for f in client(two, "key-a").files.list()] == [made.id]
    with pytest.raises(openai.NotFoundError):
        client(two, "key-b").files.retrieve(made.id)


def test_a_client_that_hangs_up_mid_download_frees_its_upstream_connection(stack: Stack) -> None:
    """Two upstream connections per process: a download left open by a client gone would
    hold one for good, and the third request would wait for a free one until it timed out."""
    up = stack.upstream()
    gw = stack.gateway(up, UPSTREAM_CONCURRENCY="2", UPSTREAM_TIMEOUT="5")
    a = client(gw, "key-a")
    made = a.files.create(file=("b.bin", os.urandom(20 * MB)), purpose="assistants")
    headers = {"Authorization": "Bearer key-a"}
    for _ in range(5):
        with httpx.stream("GET", f"{gw.url}/v1/files/{made.id}/content", headers=headers) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # then hang up with most of the file unread
    assert len(a.files.content(made.id).content) == 20 * MB
    assert "Traceback" not in gw.output()
