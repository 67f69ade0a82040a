"""An offline, deterministic provider: same request, same answer, realistic `usage`.

Used by `make run` when no `OPENAI_API_KEY` is set, so the gateway and its cache can be
tried without a key or a network.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson

from genai_api.apis import BY_PATH
from genai_api.apis import embeddings as embeddings_api
from genai_api.apis.response_items import prompt_messages
from genai_api.apis.response_stream import synthesize
from genai_api.savings.tokenizer import TokenCounter


def _approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class MockProvider:
    name = "mock"

    def __init__(self, latency_ms: float = 0.0, tokens: TokenCounter | None = None) -> None:
        self.latency = latency_ms / 1000.0
        self.calls = 0
        self.tokens = tokens  # real tiktoken counts when given, else ~4 characters a token

    def _usage(self, path: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """Replace the rough usage with tiktoken's count, as a real provider would report."""
        if self.tokens is not None:
            model = str(body.get("model", "mock"))
            api = BY_PATH.get(path)
            if api is None:
                usage = embeddings_api.count(self.tokens, model, None, body)
            else:
                usage = api.count(self.tokens, model, None, body, answer)
            usage.pop("estimated")
            answer["usage"] = usage
            if path == "/responses":
                answer["usage"] = _responses_usage(
                    usage["prompt_tokens"], usage["completion_tokens"]
                )

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        seed = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        model = str(body.get("model", "mock"))
        if path == "/embeddings":
            embedded = self._embeddings(body, model)
            self._usage(path, body, embedded)
            return embedded
        if path == "/responses":
            response = _response(body, model, seed)
            self._usage(path, body, response)
            return response
        n = int(body.get("n") or 1)
        if path == "/chat/completions":
            messages = body.get("messages") or []
            last = _text_of(messages[-1].get("content")) if messages else ""
            prompt = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
            text = f"This is a mock answer to: {last[:200]}"
            choices: list[dict[str, Any]] = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
            obj, prefix = "chat.completion", "chatcmpl"
        else:
            prompt = str(body.get("prompt", ""))
            text = f" mock completion of: {prompt[:200]}"
            choices = [
                {"index": i, "text": text, "logprobs": None, "finish_reason": "stop"}
                for i in range(n)
            ]
            obj, prefix = "text_completion", "cmpl"
        prompt_tokens = _approx_tokens(prompt)
        completion_tokens = _approx_tokens(text) * n
        answer: dict[str, Any] = {
            "id": f"{prefix}-mock{seed[:24]}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_mock",
        }
        self._usage(path, body, answer)
        return answer

    def _embeddings(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        inputs = body.get("input")
        items = (
            inputs
            if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int)
            else [inputs]
        )
        dims = int(body.get("dimensions") or 1536)
        data = []
        tokens = 0
        for i, item in enumerate(items):
            seed = hashlib.sha256(orjson.dumps([model, dims, item])).digest()
            rng = random.Random(seed)
            vec = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            # float32, as real providers compute them; base64 = their little-endian bytes
            f32 = np.asarray([v / norm for v in vec], dtype="<f4")
            embedding: str | list[float] = (
                base64.b64encode(f32.tobytes()).decode()
                if body.get("encoding_format") == "base64"
                else f32.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
            tokens += len(item) if isinstance(item, list) else _approx_tokens(str(item))
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        full = await self.create(path, body)
        chunks = synthesize(full, _words) if path == "/responses" else _chunks_of(full)
        for chunk in chunks:
            yield chunk

    async def aclose(self) -> None:
        return None


def _chunks_of(full: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a mock answer into word-sized stream chunks (chat and completion shapes)."""
    chunks: list[dict[str, Any]] = []
    chat = full["object"] == "chat.completion"
    base: dict[str, Any] = {"id": full["id"], "created": full["created"], "model": full["model"]}
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    for choice in full["choices"]:
        text = choice["message"]["content"] if chat else choice["text"]
        words = text.split(" ")
        for j, word in enumerate(words):
            piece = word if j == 0 else " " + word
            if chat:
                delta: dict[str, Any] = {"content": piece}
                if j == 0:
                    delta["role"] = "assistant"
                c = {
                    "index": choice["index"],
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": None,
                }
            else:
                c = {
                    "index": choice["index"],
                    "text": piece,
                    "logprobs": None,
                    "finish_reason": None,
                }
            chunks.append({**base, "choices": [c]})
        end: dict[str, Any] = {"index": choice["index"], "logprobs": None, "finish_reason": "stop"}
        if chat:
            end["delta"] = {}
        else:
            end["text"] = ""
        chunks.append({**base, "choices": [end]})
    chunks.append({**base, "choices": [], "usage": full["usage"]})
    return chunks


def _words(text: str) -> list[str]:
    """Word-sized stream deltas, each word after the first with its leading space."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _responses_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _response(body: dict[str, Any], model: str, seed: str) -> dict[str, Any]:
    """A completed Responses API answer shaped as OpenAI's (one assistant message)."""
    messages = prompt_messages(body)
    prompt = " ".join(m["content"] for m in messages)
    last = messages[-1]["content"] if messages else ""
    instructions = body.get("instructions")
    text = f"This is a mock answer to: {last[:200]}"
    message = {
        "id": f"msg_mock{seed[:40]}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    }
    return {
        "id": f"resp_mock{seed[:40]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [message],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": _responses_usage(_approx_tokens(prompt), _approx_tokens(text)),
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
