"""Upstream providers behind one narrow protocol: the OpenAI SDK, an offline mock, and the
routing provider that sends each model's calls to its own upstream (`routing`)."""

from genai_api.providers.base import Provider
from genai_api.providers.factory import build_provider

__all__ = ["Provider", "build_provider"]
