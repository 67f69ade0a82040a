"""Files, batches and speech for the fake upstream: what the pass-through's tests exercise,
answered in OpenAI's shapes (ids, list pagination, error envelopes), kept in memory.

- `POST /v1/files` (multipart `file`, `purpose`), `GET /v1/files` (`after`, `limit`,
  `order`, `purpose`; newest first), `GET|DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`
  (streamed in 64 KiB chunks);
- `POST /v1/batches` (`input_file_id` must be a `batch` file), `GET /v1/batches[/{id}]`,
  `POST /v1/batches/{id}/cancel`: a batch is `validating` when created and `completed` when
  first retrieved, its lines answered by the fake's chat/completions/embeddings into a new
  output file (`output_file_id`), as OpenAI's are hours later;
- `POST /v1/audio/speech`: deterministic bytes in four chunks, `--latency-ms` apart, or with
  `stream_format: "sse"` the `speech.audio.delta` / `speech.audio.done` events.

`GET /seen` answers the headers of the last request these routes received.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

CHUNK = 64 * 1024
Answer = Callable[[str, dict[str, Any]], dict[str, Any]]


def _error(message: str, status: int, param: str | None = None) -> tuple[int, dict[str, Any]]:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return status, {"error": body}


class FakeObjects:
    def __init__(self, latency: float, answer: Answer) -> None:
        self.latency = latency
        self.answer = answer  # (url, body) -> what the fake answers a batch line
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, str] = {}
        self._clock = itertools.count(1_700_000_000)

    def handles(self, path: str) -> bool:
        return path == "/seen" or path.startswith(("/v1/files", "/v1/batches", "/v1/audio/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if scope["path"] == "/seen":
            await _json(send, 200, {"headers": self.seen})
            return
        self.seen = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method, parts = scope["method"], scope["path"].split("/")[2:]
        if parts == ["audio", "speech"] and method == "POST":
            await self._speech(send, orjson.loads(await request.body() or b"{}"))
            return
        if parts[0] == "files" and len(parts) == 3 and parts[2] == "content" and method == "GET":
            await self._content(send, parts[1])
            return
        status, answer = await self._route(request, method, parts)
        await _json(send, status, answer)

    async def _route(
        self, request: Request, method: str, parts: list[str]
    ) -> tuple[int, dict[str, Any]]:
        query = dict(parse_qsl(request.url.query))
        match parts, method:
            case ["files"], "POST":
                return await self._upload(request)
            case ["files"], "GET":
                files = [meta for meta, _ in self.files.values()]
                if "purpose" in query:
                    files = [meta for meta in files if meta["purpose"] == query["purpose"]]
                return 200, _page(files, query, 10_000)
            case ["files", file_id], "GET":
                return self._file(file_id)
            case ["files", file_id], "DELETE":
                if self.files.pop(file_id, None) is None:
                    return self._file(file_id)
                return 200, {"id": file_id, "object": "file", "deleted": True}
            case ["batches"], "POST":
                return self._create_batch(orjson.loads(await request.body() or b"{}"))
            case ["batches"], "GET":
                return 200, _page([self._finish(b) for b in self.batches.values()], query, 20)
            case ["batches", batch_id], "GET":
                if batch_id not in self.batches:
                    return _error(f"No batch found with id '{batch_id}'.", 404, "batch_id")
                return 200, self._finish(self.batches[batch_id])
            case ["batches", batch_id, "cancel"], "POST":
                if batch_id not in self.batches:
                    return _error(f"No batch found with id '{batch_id}'.", 404, "batch_id")
                self.batches[batch_id]["status"] = "cancelled"
                return 200, self.batches[batch_id]
        return _error(f"Invalid URL ({method} {request.url.path})", 404)

    def _file(self, file_id: str) -> tuple[int, dict[str, Any]]:
        if file_id not in self.files:
            return _error(f"No such File object: {file_id}", 404, "id")
        return 200, self.files[file_id][0]

    def _store(self, name: str, purpose: str, data: bytes) -> dict[str, Any]:
        meta = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(data),
            "created_at": next(self._clock),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[meta["id"]] = (meta, data)
        return meta

    async def _upload(self, request: Request) -> tuple[int, dict[str, Any]]:
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile) or not isinstance(purpose, str):
            return _error("'file' and 'purpose' are required.", 400, "file")
        data = await upload.read()
        await form.close()
        return 200, self._store(upload.filename or "upload", purpose, data)

    async def _content(self, send: Send, file_id: str) -> None:
        if file_id not in self.files:
            status, body = self._file(file_id)
            await _json(send, status, body)
            return
        data = self.files[file_id][1]
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, len(data), CHUNK):
            piece = data[start : start + CHUNK]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or file_id not in self.files:
            return _error(f"No such File object: {file_id}", 404, "input_file_id")
        if self.files[file_id][0]["purpose"] != "batch":
            return _error("The input file's purpose must be 'batch'.", 400, "input_file_id")
        batch = {
            "id": f"batch_{uuid.uuid4().hex}",
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": next(self._clock),
            "metadata": body.get("metadata"),
        }
        self.batches[batch["id"]] = batch
        return 200, batch

    def _finish(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Complete a validating batch: each line answered, the answers in a new file."""
        if batch["status"] != "validating":
            return batch
        lines = []
        for line in self.files[batch["input_file_id"]][1].splitlines():
            if line.strip():
                request = orjson.loads(line)
                answer = self.answer(request["url"], request.get("body") or {})
                response = {"status_code": 200, "request_id": uuid.uuid4().hex, "body": answer}
                lines.append({"id": f"batch_req_{uuid.uuid4().hex}", "response": response,
                              "custom_id": request.get("custom_id"), "error": None})  # fmt: skip
        out = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        output = self._store(f"{batch['id']}_output.jsonl", "batch_output", out)
        batch.update(status="completed", output_file_id=output["id"])
        return batch

    async def _speech(self, send: Send, body: dict[str, Any]) -> None:
        seed = hashlib.sha256(str(body.get("input", "")).encode()).digest()
        chunks = [seed * 512 for _ in range(4)]  # 16 KiB each
        sse = body.get("stream_format") == "sse"
        media = b"text/event-stream" if sse else b"audio/mpeg"
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", media)],
        }
        await send(start)
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(self.latency)
            if sse:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
                chunk = b"data: " + orjson.dumps(event) + b"\n\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        done = b""
        if sse:
            usage = {"input_tokens": 5, "output_tokens": 40, "total_tokens": 45}
            done = b"data: " + orjson.dumps({"type": "speech.audio.done", "usage": usage}) + b"\n\n"
        await send({"type": "http.response.body", "body": done})


def _page(items: list[dict[str, Any]], query: dict[str, str], limit: int) -> dict[str, Any]:
    """OpenAI's cursor pagination: newest first unless `order=asc`, after the `after` id."""
    ordered = sorted(items, key=lambda i: i["created_at"], reverse=query.get("order") != "asc")
    if "after" in query:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
    size = int(query.get("limit", limit))
    data = ordered[:size]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > size,
    }


async def _json(send: Send, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
