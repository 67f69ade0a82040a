"""Upstream providers behind one narrow protocol: the OpenAI SDK, and an offline mock."""

from genai_api.providers.base import Provider
from genai_api.providers.factory import build_provider

__all__ = ["Provider", "build_provider"]
