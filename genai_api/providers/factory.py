"""Builds the configured provider inside the app's lifespan."""

from __future__ import annotations

import httpx
import openai

from genai_api.providers.aiohttp_client import GatewayAioHttpClient
from genai_api.providers.base import Provider
from genai_api.providers.mock import MockProvider
from genai_api.providers.openai import OpenAIProvider
from genai_api.savings.tokenizer import TokenCounter
from genai_api.settings import Settings


def build_provider(
    settings: Settings,
    http_client: httpx.AsyncClient | None = None,
    tokens: TokenCounter | None = None,
) -> Provider:
    """The provider for `settings`; `http_client` lets tests inject a respx-mocked client."""
    if settings.resolved_provider == "mock":
        return MockProvider(settings.mock_latency_ms, tokens)
    if http_client is None:
        limits = httpx.Limits(
            max_connections=settings.upstream_concurrency * 2,
            max_keepalive_connections=settings.upstream_concurrency,
        )
        http_client = (
            GatewayAioHttpClient(limits=limits)
            if settings.upstream_http_client == "aiohttp"
            else openai.DefaultAsyncHttpxClient(limits=limits)
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return OpenAIProvider(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.upstream_timeout,
        max_retries=settings.upstream_max_retries,
        http_client=http_client,
    )
