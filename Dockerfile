# genai-api image: docker build -t genai-api . && docker run -p 8000:8000 genai-api
# Two stages: the build stage installs the package into a venv; the runtime stage copies
# only that venv, so no pip cache, sources or build tools end up in the image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY genai_api ./genai_api
# The tokenizer rank files are package data (genai_api/data/tiktoken): installing the
# package bakes them in. Loading the encodings here proves it, with no network.
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -c "from genai_api.savings.tokenizer import TokenCounter; TokenCounter.load()"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMPTS_DIR=/app/prompts
RUN groupadd --system --gid 10001 genai \
    && useradd --system --uid 10001 --gid genai --home-dir /app --no-create-home genai
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=genai:genai prompts ./prompts
USER genai
EXPOSE 8000
# slim images have no curl: ask /healthz with the Python already in the image.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["genai-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
