"""genai-api: an OpenAI-compatible gateway whose reason to exist is its response cache."""

__version__ = "0.1.0"
