"""A fast fake OpenAI-compatible upstream: fixed latency, deterministic answers, a call counter.

Raw ASGI on uvicorn (uvloop + httptools) so the fake costs little CPU next to what it
measures. Used by the benchmarks and by the multi-process tests, which read `GET /calls`.

    python -m bench.fake_upstream --port 9100 --latency-ms 300
    python -m bench.fake_upstream --port 9101 --api-key sk-vllm --models llama,bge --fail 503

Endpoints: POST /v1/chat/completions (JSON or SSE with `stream: true`), POST /v1/completions,
POST /v1/embeddings (float or base64), POST /v1/responses (JSON or typed SSE events, see
`bench.fake_responses`) and GET/DELETE /v1/responses/{id}[/input_items], GET /v1/models (the
`--models` given, else 404 as a server that cannot list), GET /calls (calls by path, how many
times each embeddings input, each model name and each bearer was sent), POST /reset, POST
/mode; files, batches and audio speech for the pass-through's tests (`bench/fake_files.py`).

As one of several upstreams in tests, it checks the bearer (`--api-key`: any other, or none,
is 401) and can misbehave, set at start (`--fail 503`) or at run time (`POST /mode` with
`{"fail": 503, "hang": false, "cut": false}`): `fail` answers every model call with that
status (with `Retry-After` when `"retry_after"` is set), `hang` never answers one, `cut`
ends a stream after its first chunk without `[DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct
from collections import Counter
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from bench import fake_responses
from bench.fake_files import FakeObjects
from bench.serving import serve


class FakeUpstream:
    def __init__(
        self,
        latency_ms: float = 0.0,
        dims: int = 1536,
        *,
        api_key: str | None = None,
        models: list[str] | None = None,
        fail: int | None = None,
    ) -> None:
        self.latency = latency_ms / 1000.0
        self.dims = dims
        self.api_key = api_key  # the bearer it insists on (None: any, or none)
        self.models = models  # what GET /v1/models lists (None: 404)
        self.mode: dict[str, Any] = {"fail": fail, "hang": False, "cut": False, "retry_after": None}
        self.calls: Counter[str] = Counter()
        self.inputs: Counter[str] = Counter()  # embeddings inputs (JSON of each) asked for
        self.stored = fake_responses.Stored()
        self.objects = FakeObjects(self.latency, self._answer)
        self.sent_models: Counter[str] = Counter()  # the `model` of each call
        self.bearers: Counter[str] = Counter()  # the bearer of each call ("" for none)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/calls":
            total = sum(self.calls.values())
            await _json(
                send,
                {
                    "total": total,
                    "by_path": dict(self.calls),
                    "inputs": self.inputs,
                    "models": self.sent_models,
                    "bearers": self.bearers,
                },
            )
            return
        if method == "POST" and path == "/reset":
            for counter in (self.calls, self.inputs, self.sent_models, self.bearers):
                counter.clear()
            self.stored = fake_responses.Stored()
            await _json(send, {"ok": True})
            return
        if self.objects.handles(path):
            self.calls[path] += path != "/seen"
            await self.objects(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if method == "POST" and path == "/mode":
            self.mode.update(orjson.loads(body or b"{}"))
            await _json(send, self.mode)
            return
        bearer = _bearer(scope)
        if self.api_key is not None and bearer != self.api_key:
            await _json(send, _error("Incorrect API key provided.", "invalid_api_key"), status=401)
            return
        if method == "GET" and path.endswith("/models"):
            await self._list(send)
            return
        request = orjson.loads(body or b"{}")
        self.calls[path] += 1
        self.sent_models[str(request.get("model"))] += 1
        self.bearers[bearer or ""] += 1
        if path.endswith("/embeddings"):  # counted on arrival, like the calls
            self.inputs.update(orjson.dumps(item).decode() for item in _inputs(request))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.mode["hang"]:
            await asyncio.Event().wait()  # until the client gives up
        if self.mode["fail"]:
            status = int(self.mode["fail"])
            extra = {}
            if self.mode.get("retry_after") is not None:
                extra["retry-after"] = str(self.mode["retry_after"])
            error = _error(f"fake failure {status}", "fake_failure")
            await _json(send, error, status=status, headers=extra)
            return
        if "/responses/" in path:
            rest = path.split("/responses/", 1)[1]
            status, answer = self.stored.answer(method, rest)
            await _json(send, answer, status=status)
        elif path.endswith("/responses"):
            await self._responses(send, request)
        elif path.endswith("/chat/completions"):
            if request.get("stream"):
                await self._stream(send, request)
            else:
                await _json(send, _chat(request))
        elif path.endswith("/completions"):
            await _json(send, _completion(request))
        elif path.endswith("/embeddings"):
            await _json(send, self._embeddings(request))
        else:
            await _json(send, _error("not found", None), status=404)

    async def _list(self, send: Send) -> None:
        if self.models is None:
            await _json(send, _error("not found", None), status=404)
            return
        data = [
            {"id": model, "object": "model", "created": 1_700_000_000 + i, "owned_by": "fake"}
            for i, model in enumerate(self.models)
        ]
        await _json(send, {"object": "list", "data": data})

    def _answer(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """What a batch line for `url` gets: the answer the route itself gives."""
        if url.endswith("/chat/completions"):
            return _chat(body)
        if url.endswith("/completions"):
            return _completion(body)
        return self._embeddings(body)

    async def _responses(self, send: Send, request: dict[str, Any]) -> None:
        previous = request.get("previous_response_id")
        if previous is not None and previous not in self.stored.responses:
            message = f"Previous response with id '{previous}' not found."
            error = {"message": message, "type": "invalid_request_error"}
            await _json(
                send, {"error": {**error, "param": "previous_response_id", "code": None}}, 404
            )
            return
        answer = fake_responses.response(request)
        self.stored.keep(request, answer)
        if not request.get("stream"):
            await _json(send, answer)
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in fake_responses.events(request):
            body = fake_responses.sse(event)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _answer(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """What a batch line for `url` gets: the answer the route itself gives."""
        if url.endswith("/chat/completions"):
            return _chat(body)
        if url.endswith("/completions"):
            return _completion(body)
        return self._embeddings(body)

    async def _stream(self, send: Send, request: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        full = _chat(request)
        base = {
            "id": full["id"],
            "object": "chat.completion.chunk",
            "created": full["created"],
            "model": full["model"],
        }
        words = full["choices"][0]["message"]["content"].split(" ")
        for i, word in enumerate(words):
            delta: dict[str, Any] = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await send({"type": "http.response.body", "body": _sse(chunk), "more_body": True})
            if self.mode["cut"]:  # the connection ends after the first chunk, no [DONE]
                await send({"type": "http.response.body", "body": b""})
                return
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await send({"type": "http.response.body", "body": _sse(end), "more_body": True})
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": full["usage"]}
            await send({"type": "http.response.body", "body": _sse(usage), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    def _embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        items = _inputs(request)
        dims = int(request.get("dimensions") or self.dims)
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            seed = hashlib.sha256(orjson.dumps(item)).digest()
            values = [((seed[(i * 7) % 32] + i) % 251) / 251.0 - 0.5 for i in range(dims)]
            if as_base64:
                vector: Any = base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()
            else:
                vector = values
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(i) if isinstance(i, list) else max(1, len(str(i)) // 4) for i in items)
        return {
            "object": "list",
            "data": data,
            "model": request.get("model", "fake"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:] if text.lower().startswith("bearer ") else text
    return None


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": code}}


def _inputs(request: dict[str, Any]) -> list[Any]:
    inputs = request.get("input")
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int):
        return inputs
    return [inputs]


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chat(request: dict[str, Any]) -> dict[str, Any]:
    same = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    digest = hashlib.sha256(orjson.dumps(same, option=orjson.OPT_SORT_KEYS)).hexdigest()
    text = f"Fake answer {digest[:8]} from the benchmark upstream."
    n = int(request.get("n") or 1)
    return {
        "id": f"chatcmpl-fake{digest[:20]}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": request.get("model", "fake"),
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": _usage(20, 9 * n),
    }


def _completion(request: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return {
        "id": f"cmpl-fake{digest[:20]}",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": request.get("model", "fake"),
        "choices": [
            {"index": 0, "text": f" fake {digest[:8]}", "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": _usage(5, 2),
    }


async def _json(
    send: Send, payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> None:
    body = orjson.dumps(payload)
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--api-key", help="the bearer to insist on (any other is 401)")
    parser.add_argument("--models", help="comma-separated models GET /v1/models lists")
    parser.add_argument("--fail", type=int, help="answer every model call with this status")
    args = parser.parse_args()
    models = args.models.split(",") if args.models is not None else None
    fake = FakeUpstream(
        args.latency_ms, args.dims, api_key=args.api_key, models=models, fail=args.fail
    )
    serve(fake, args.host, args.port)


if __name__ == "__main__":
    main()
