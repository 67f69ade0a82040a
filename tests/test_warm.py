"""`genai-api warm`: batch lines through the server's own pipeline, resumable, line-exact errors."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from genai_api.cli import build_parser
from genai_api.commands.warm import warm_main
from genai_api.models.table import ModelTable
from genai_api.settings import Settings
from genai_api.warming.batch_file import LineError, WarmSummary, parse_line
from tests.conftest import chat_response, make_settings, running
from tests.live_server import live_server as serve_live
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def _line(custom_id: str, url: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def _chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


GOOD = [
    _line("a", "/v1/chat/completions", _chat("first question")),
    _line("b", "/v1/chat/completions", {**_chat("second question"), "stream": True}),
    _line("c", "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Once"}),
    _line(
        "d",
        "/v1/prompts/summarise/completions",
        {"variables": {"text": "A long story.", "sentences": 1}},
    ),
    _line("e", "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["x", "y"]}),
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _summary(output: str) -> dict[str, int]:
    match = re.search(
        r"lines (\d+): hits (\d+), misses (\d+), coalesced (\d+), bypassed (\d+), errors (\d+)",
        output,
    )
    assert match, output
    keys = ("lines", "hits", "misses", "coalesced", "bypassed", "errors")
    return dict(zip(keys, map(int, match.groups()), strict=True))


@pytest.fixture
def warm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Settings:
    """The environment `genai-api warm` reads: Redis, the mock provider, the repo's prompts."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {
        "CACHE_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "CACHE_NAMESPACE": f"w{uuid.uuid4().hex[:10]}",
        "PROVIDER": "mock",
        "PROMPTS_DIR": str(ROOT / "prompts"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return make_settings(
        cache_backend="redis",
        redis_url=redis_url,
        cache_namespace=env["CACHE_NAMESPACE"],
        provider="mock",
        prompts_dir=ROOT / "prompts",
    )


# --- batch lines


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"url": "/v1/chat/completions", "method": "GET", "body": {}}', "must be POST"),
        ('{"url": "/v1/cache", "body": {}}', "unsupported url"),
        ('{"url": "/v1/chat/completions", "body": [1]}', "'body' must be a JSON object"),
        ('{"body": {}}', "missing 'url'"),
    ],
)
def test_bad_batch_lines_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(LineError, match=re.escape(problem)):
        parse_line(1, text)


def test_stream_fields_are_dropped_and_short_urls_accepted() -> None:
    line = parse_line(7, _line("x", "/chat/completions", {**_chat("q"), "stream": True}))
    assert (line.number, line.url, line.custom_id) == (7, "/v1/chat/completions", "x")
    assert "stream" not in line.body


def test_summary_prices_misses_and_reads_savings_from_headers() -> None:
    summary = WarmSummary()
    line = parse_line(1, GOOD[0])
    miss = httpx.Response(200, json=chat_response(prompt=1000, completion=100))
    miss.headers["x-cache"] = "MISS"
    hit = httpx.Response(200, json=chat_response())
    hit.headers.update(
        {"x-cache": "HIT", "x-cache-saved-tokens": "17", "x-cache-saved-cost-usd": "0.0000048"}
    )
    summary.count(line, miss, ModelTable.load(None))
    summary.count(line, hit, ModelTable.load(None))
    assert (summary.hits, summary.misses, summary.tokens_spent, summary.tokens_saved) == (
        1,
        1,
        1100,
        17,
    )
    # gpt-4o-mini: 1000 * 0.15/1M + 100 * 0.60/1M
    assert summary.cost_spent == Decimal("0.00021")
    assert summary.cost_saved == Decimal("0.0000048")


@pytest.mark.parametrize(
    ("headers", "counted"),
    [
        ({"x-cache": "COALESCED"}, "coalesced"),
        ({"x-cache": "BYPASS"}, "bypassed"),
        ({"x-cache-hits": "2", "x-cache-misses": "0"}, "hits"),
        ({"x-cache-hits": "1", "x-cache-misses": "1"}, "misses"),
    ],
)
def test_summary_classifies_each_answer_by_its_cache_headers(
    headers: dict[str, str], counted: str
) -> None:
    summary = WarmSummary()
    response = httpx.Response(200, json=chat_response(), headers=headers)
    summary.count(parse_line(1, GOOD[0]), response, ModelTable.load(None))
    counts = {n: getattr(summary, n) for n in ("hits", "misses", "coalesced", "bypassed")}
    assert counts == {n: int(n == counted) for n in counts}


# --- in-process


@pytest.mark.redis
async def test_in_process_warm_fills_the_cache_the_server_reads(
    warm_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, GOOD)
    # warm_main runs its own event loop, so it runs in a thread here.
    code = await asyncio.to_thread(warm_main, str(path), api_key="client-key")
    out = capsys.readouterr().out
    assert code == 0, out
    assert _summary(out) == {
        "lines": 5,
        "hits": 0,
        "misses": 5,
        "coalesced": 0,
        "bypassed": 0,
        "errors": 0,
    }
    # With regenerates on (the default): the client repeating warm's sampled lines with the
    # same key is not a regenerate, since nobody read what warming stored.
    regenerating = warm_env.model_copy(update={"cache_regenerate_seconds": 120})
    async with running(regenerating) as gw:
        a = await gw.client.chat.completions.with_raw_response.create(**_chat("first question"))
        b = await gw.client.chat.completions.with_raw_response.create(
            **_chat("second question"), stream=False
        )
        d = await gw.http.post(
            "/v1/prompts/summarise/completions",
            json={"variables": {"text": "A long story.", "sentences": 1}},
            headers={"Authorization": "Bearer client-key"},
        )
        e = await gw.client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["y", "x"]
        )
        provider_calls = gw.gateway.provider.calls
    assert [r.headers["x-cache"] for r in (a, b, d, e)] == ["HIT", "HIT", "HIT", "HIT"]
    assert provider_calls == 0


@pytest.mark.redis
async def test_warm_is_resumable_already_cached_lines_are_hits(
    warm_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(warm_main, str(_write(tmp_path, GOOD[:2])))
    first = capsys.readouterr().out
    code = await asyncio.to_thread(warm_main, str(_write(tmp_path, GOOD)))
    second = capsys.readouterr().out
    assert code == 0
    assert _summary(second)["hits"] == 2 and _summary(second)["misses"] == 3
    spent = re.search(r"tokens: ([\d,]+) spent", first)
    saved = re.search(r"tokens: [\d,]+ spent, ([\d,]+) saved", second)
    assert spent and saved and spent.group(1) == saved.group(1) != "0"
    cost_spent = re.search(r"cost: \$([\d.]+) spent", first)
    cost_saved = re.search(r"cost: \$[\d.]+ spent, \$([\d.]+) saved", second)
    assert cost_spent and cost_saved
    assert Decimal(cost_spent.group(1)) == Decimal(cost_saved.group(1)) > 0


@pytest.mark.redis
async def test_bad_lines_are_reported_by_number_and_the_rest_still_run(
    warm_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        GOOD[0],
        "{oops",
        "",
        _line("x", "/v1/cache", {}),
        _line("y", "/v1/prompts/nope/completions", {"variables": {}}),
        _line("z", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
        GOOD[2],
    ]
    code = await asyncio.to_thread(warm_main, str(_write(tmp_path, lines)))
    captured = capsys.readouterr()
    assert code == 1
    assert _summary(captured.out) == {
        "lines": 6,
        "hits": 0,
        "misses": 2,
        "coalesced": 0,
        "bypassed": 0,
        "errors": 4,
    }
    assert "line 2: not valid JSON" in captured.out
    assert "line 4: unsupported url" in captured.out
    assert "line 5: HTTP 404" in captured.out
    assert "line 6: HTTP 400" in captured.out
    assert "line 1:" not in captured.out and "line 3:" not in captured.out


@pytest.mark.redis
async def test_a_line_that_is_not_utf8_is_its_own_error_and_a_bom_is_not_content(
    warm_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "batch.jsonl"
    bad = (
        _line("bad", "/v1/chat/completions", _chat("caf\u00e9"))
        .encode()
        .replace(b"caf\\u00e9", b"caf\xff")
    )
    path.write_bytes(
        b"\xef\xbb\xbf" + GOOD[0].encode() + b"\n" + bad + b"\n" + GOOD[2].encode() + b"\n"
    )
    code = await asyncio.to_thread(warm_main, str(path))
    captured = capsys.readouterr()
    assert code == 1
    assert _summary(captured.out) == {
        "lines": 3,
        "hits": 0,
        "misses": 2,
        "coalesced": 0,
        "bypassed": 0,
        "errors": 1,
    }
    column = bad.index(b"\xff") + 1
    assert f"line 2: not valid UTF-8 (byte 0xff at column {column})" in captured.out
    assert "line 1:" not in captured.out


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_in_process_warm_with_redis_down_runs_no_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on the port: every line would be paid for upstream and stored nowhere.
    _clean_env(
        monkeypatch,
        tmp_path,
        CACHE_BACKEND="redis",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL="http://upstream.test/v1",
        UPSTREAM_HTTP_CLIENT="httpx",
    )
    with respx.mock(base_url="http://upstream.test/v1", assert_all_called=False) as mock:
        route = mock.post("/chat/completions").mock(
            return_value=httpx.Response(200, json=chat_response())
        )
        code = warm_main(str(_write(tmp_path, GOOD[:2])))
    captured = capsys.readouterr()
    assert code == 2
    assert "the cache backend (redis) is not answering" in captured.err
    assert "no line was run" in captured.err
    assert route.call_count == 0


def test_in_process_warm_whose_lines_were_not_stored_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_env(monkeypatch, tmp_path, PROVIDER="mock", CACHE_NONDETERMINISTIC="false")
    cold = _line("y", "/v1/chat/completions", {**_chat("say 1"), "temperature": 0})
    hot = _line("z", "/v1/chat/completions", {**_chat("say anything"), "temperature": 0.9})
    code = warm_main(str(_write(tmp_path, [cold, hot])))
    out = capsys.readouterr().out
    assert code == 1
    summary = _summary(out)
    assert (summary["misses"], summary["bypassed"], summary["errors"]) == (1, 1, 0)
    assert "1 line(s) bypassed the cache (not stored)" in out


def test_missing_file_exits_2(tmp_path: Path) -> None:
    assert warm_main(str(tmp_path / "absent.jsonl")) == 2


def test_a_bad_variable_is_one_line_and_exit_2_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CACHE_DEFAULT_TTL", "-1")
    assert warm_main(str(_write(tmp_path, GOOD))) == 2
    captured = capsys.readouterr()
    assert captured.err == "genai-api: CACHE_DEFAULT_TTL: must be at least 1 (got '-1')\n"
    assert captured.out == ""


def test_a_broken_models_file_is_one_line_and_exit_2_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    (tmp_path / "models.toml").write_text("[models\n")
    monkeypatch.setenv("MODELS_FILE", "models.toml")
    assert warm_main(str(_write(tmp_path, GOOD))) == 2
    assert capsys.readouterr().err.startswith("genai-api: MODELS_FILE models.toml: not valid TOML")


async def test_cache_warm_file_warms_in_the_background_at_start_up(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    path = _write(tmp_path, [GOOD[0], "{bad"])
    async with running(make_settings(cache_warm_file=path)) as gw:
        summary = await gw.app.state.warm_task
        answer = await gw.http.post("/v1/chat/completions", json=_chat("first question"))
    assert (summary.misses, summary.errors) == (1, 1)
    assert answer.headers["x-cache"] == "HIT"
    assert route.call_count == 1


# --- --url: through a live server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    with serve_live(tmp_path, {"PROMPTS_DIR": str(ROOT / "prompts")}) as url:
        yield url


@pytest.mark.slow
def test_warm_through_a_running_server(
    live_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [*GOOD, "{bad"])
    first = warm_main(str(path), url=live_server, concurrency=2)
    first_out = capsys.readouterr().out
    second = warm_main(str(path), url=live_server)
    second_out = capsys.readouterr().out
    answer = httpx.post(live_server + "/v1/chat/completions", json=_chat("first question"))
    assert (first, second) == (1, 1)
    assert _summary(first_out)["misses"] == 5 and _summary(first_out)["errors"] == 1
    assert _summary(second_out)["hits"] == 5 and "line 6: not valid JSON" in second_out
    assert answer.headers["x-cache"] == "HIT"


def test_cli_passes_warm_options() -> None:
    args = build_parser().parse_args(
        ["warm", "f.jsonl", "--url", "http://h:1", "--api-key", "k", "--concurrency", "3"]
    )
    assert (args.file, args.url, args.api_key) == ("f.jsonl", "http://h:1", "k")
    assert args.concurrency == 3


def test_responses_lines_are_accepted_and_priced_by_input_and_output_tokens() -> None:
    body = {"model": "gpt-4o-mini", "input": "What is a cache?", "stream": True}
    line = parse_line(3, _line("r", "/v1/responses", body))
    assert (line.url, line.body) == (
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": body["input"]},
    )
    usage = {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100}
    miss = httpx.Response(200, json={"object": "response", "usage": usage})
    miss.headers["x-cache"] = "MISS"
    summary = WarmSummary()
    summary.count(line, miss, ModelTable.load(None))
    assert summary.tokens_spent == 1100
    assert summary.cost_spent == Decimal("0.00021")  # as chat's 1000 prompt + 100 completion
