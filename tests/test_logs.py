"""Secrets never reach the logs; prompts are not logged at INFO."""

from __future__ import annotations

import io
import logging
import logging.config
from pathlib import Path

import httpx
import pytest
import respx

from genai_api.logs import RedactSecrets, RepeatLimit, flush_logs, redact
from tests import processes
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.redis_server import free_port


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to redis://:hunter2@cache:6379/1", "hunter2"),
        ("connecting to rediss://default:s3cr3t-pw@cache:6380/0 now", "s3cr3t-pw"),
        ("proxy http://user:proxy-pass@proxy.local:3128/v1", "proxy-pass"),
        ("headers {'authorization': 'Bearer client-token-123'}", "client-token-123"),
        ('headers {"Authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        ("upstream key sk-proj-AbCdEf123456_789 rejected", "AbCdEf123456_789"),
        ("password=letmein&db=0", "letmein"),
        ("OPENAI_API_KEY=whatever-key-value", "whatever-key-value"),
        ('{"api_key": "k-123456"}', "k-123456"),
        ("TENANT_HASH_SECRET: pepper-value", "pepper-value"),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "POST /v1/chat/completions 200 cache=HIT model=gpt-4o-mini 1.2ms",
        "usage prompt_tokens: 12, completion_tokens: 5, tokens_saved=17",
        "cache: redis, namespace 'genai', scope tenant",
        "redis://cache:6379/0 has no password",
        "ask-me-anything is not a key",
    ],
)
def test_redact_leaves_ordinary_lines_alone(text: str) -> None:
    assert redact(text) == text


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_filter_redacts_formatted_arguments() -> None:
    record = _record("using %s with %s", "redis://:pw-in-args@h:6379/0", "Bearer tok-in-args")
    RedactSecrets().filter(record)
    assert "pw-in-args" not in record.getMessage()
    assert "tok-in-args" not in record.getMessage()


def test_filter_redacts_tracebacks() -> None:
    try:
        raise ConnectionError("cannot reach redis://:pw-in-traceback@cache:6379/0")
    except ConnectionError as exc:
        record = _record("failed", exc=exc)
    RedactSecrets().filter(record)
    formatted = logging.Formatter().format(record)
    assert "ConnectionError" in formatted
    assert "pw-in-traceback" not in formatted


@pytest.mark.parametrize("logger", ["uvicorn.error", "uvicorn", "genai_api.pipeline", "asyncio"])
def test_every_logger_reaches_the_redacting_handler(configured: io.StringIO, logger: str) -> None:
    logging.getLogger(logger).warning("redis://:pw-%s@cache:6379/0 Bearer tok-%s", 1, 2)
    output = configured.getvalue()
    assert f"{logger}: redis://:***@cache:6379/0 Bearer ***" in output
    assert "pw-1" not in output and "tok-2" not in output


def repeat_limit() -> RepeatLimit:
    """The configured handler's `RepeatLimit`."""
    limits = [f for f in logging.getLogger().handlers[0].filters if isinstance(f, RepeatLimit)]
    assert len(limits) == 1
    return limits[0]


def test_a_repeated_warning_is_written_once_per_window_then_counted(
    configured: io.StringIO,
) -> None:
    now = [100.0]
    repeat_limit().now = lambda: now[0]
    log = logging.getLogger("genai_api.pipeline")
    for i in range(500):
        log.warning("cache unavailable, bypassing: %s", f"reason {i}")
    log.warning("another warning: %s", "its own kind")
    now[0] += 10.0
    log.warning("cache unavailable, bypassing: %s", "reason 500")
    lines = configured.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "cache unavailable, bypassing: reason 0",
        "another warning: its own kind",
        "cache unavailable, bypassing: reason 500 (499 more like this in the last 10 s)",
    ]


def test_info_lines_and_other_loggers_are_never_held_back(configured: io.StringIO) -> None:
    repeat_limit().now = lambda: 100.0
    for _ in range(50):
        logging.getLogger("genai_api").info("started %s", "once more")
        logging.getLogger("genai_api.access").info("POST /v1/chat/completions 200 cache=HIT")
    logging.getLogger("genai_api.leases").warning("the same template: %s", 1)
    logging.getLogger("genai_api.store").warning("the same template: %s", 2)
    output = configured.getvalue()
    assert output.count("started once more") == 50
    assert output.count("cache=HIT") == 50
    assert output.count("the same template") == 2  # a kind is its logger's


def test_what_was_held_back_at_shutdown_is_said(configured: io.StringIO) -> None:
    repeat_limit().now = lambda: 100.0
    for _ in range(30):
        logging.getLogger("genai_api.pipeline").warning("cache unavailable, bypassing: %s", "x")
    flush_logs()
    assert "29 more like 'cache unavailable, bypassing: %s' were held back" in (
        configured.getvalue()
    )


def test_every_kind_held_back_is_said_once_and_the_saying_is_never_held_back(
    configured: io.StringIO,
) -> None:
    """Two kinds held back on one logger give two last words, not one and a count of the
    other (the last words share a template, so they used to be held back like any repeat,
    and a second shutdown reported the first one's held-back last words)."""
    repeat_limit().now = lambda: 100.0
    log = logging.getLogger("genai_api.pipeline")
    for _ in range(3):
        log.warning("cache unavailable, bypassing: %s", "x")
        log.warning("store refused: %s", "y")
    flush_logs()
    flush_logs()
    said = [line for line in configured.getvalue().splitlines() if "held back" in line]
    assert len(said) == 2, said
    assert "2 more like 'cache unavailable, bypassing: %s'" in said[0]
    assert "2 more like 'store refused: %s'" in said[1]


def test_http_client_request_lines_stay_quiet_at_info(configured: io.StringIO) -> None:
    logging.getLogger("httpx").info("HTTP Request: POST http://upstream/v1/chat/completions")
    logging.getLogger("openai").info("Request options: {'json_data': {'messages': '...'}}")
    assert configured.getvalue() == ""


async def test_prompts_and_keys_are_not_logged_at_info(
    upstream: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    prompt = "my-very-private-prompt-text"
    body = {**CHAT, "messages": [{"role": "user", "content": prompt}]}
    settings = make_settings(gateway_api_keys="sk-client-key-1234567", admin_api_key="adm-999")
    with caplog.at_level(logging.INFO):
        async with running(settings) as gw:
            auth = {"Authorization": "Bearer sk-client-key-1234567"}
            for _ in range(2):  # a MISS, then a HIT
                await gw.http.post("/v1/chat/completions", json=body, headers=auth)
            await gw.http.post("/v1/chat/completions", json={**body, "n": 0}, headers=auth)
            await gw.http.post("/v1/chat/completions", json=body, headers={"Authorization": prompt})
            await gw.http.get("/v1/cache/stats", headers={"Authorization": "Bearer adm-999"})
    logged = "\n".join(caplog.messages)
    assert "POST /v1/chat/completions 200 cache=HIT model=gpt-4o-mini" in logged
    for secret in (prompt, "sk-client-key-1234567", "adm-999", "sk-test-upstream"):
        assert secret not in logged


@pytest.mark.slow
def test_served_workers_log_through_the_redacting_handler(tmp_path: Path) -> None:
    """A real `genai-api serve --workers 2`: each worker's log lines are redacted."""
    secrets = {
        "OPENAI_API_KEY": "sk-upstream-secret-0042",
        "OPENAI_BASE_URL": f"http://gwuser:base-url-password@127.0.0.1:{free_port()}/v1",
        "GATEWAY_API_KEYS": "client-secret-key-7",
        "ADMIN_API_KEY": "admin-secret-key-8",
        "TENANT_HASH_SECRET": "tenant-pepper-9",
    }
    env = {**secrets, "PROVIDER": "openai", "CACHE_BACKEND": "memory", "LOG_LEVEL": "INFO"}
    server = processes.gateway(tmp_path, env, workers=2)
    try:
        server.wait_ready()
        prompt = {**CHAT, "messages": [{"role": "user", "content": "private-prompt-words"}]}
        auth = {"Authorization": "Bearer client-secret-key-7"}
        url = server.url + "/v1/chat/completions"
        answer = httpx.post(url, json=prompt, headers=auth, timeout=30)
        assert answer.status_code == 502  # the upstream port is closed
    finally:
        server.stop()
    output = server.output()
    assert "provider: openai at http://gwuser:***@127.0.0.1" in output  # from a worker
    assert "POST /v1/chat/completions 502 cache=- model=gpt-4o-mini" in output
    leaked = [*secrets.values(), "base-url-password", "private-prompt-words"]
    assert [secret for secret in leaked if secret in output] == []


async def test_client_text_cannot_forge_access_log_lines(
    upstream: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    forged = "x\n12:00:00 INFO    genai_api.access: GET /admin 200"
    with caplog.at_level(logging.INFO, logger="genai_api.access"):
        async with running(make_settings()) as gw:
            await gw.http.post("/v1/chat/completions", json={**CHAT, "model": forged})
            await gw.http.get("/v1/unknown%0D%0Aforged%1B[31m")
    lines = [r.getMessage() for r in caplog.records if r.name == "genai_api.access"]
    assert len(lines) == 2
    assert all(line.isprintable() for line in lines)
    assert "model=x\\n12:00:00" in lines[0]
