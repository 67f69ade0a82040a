"""`make bench-semantic`: how precise a semantic hit is, per model, threshold and defence.

For every labelled pair (`pairs.txt`) the cached prompt and the later one are embedded with
each local model, and a pair counts as a *hit* when its cosine similarity reaches the
threshold (and, for the guarded rows, `genai_api.semantic.guard` finds nothing that tells
the two apart). Per threshold it prints, for both splits:

- precision: of the hits, the share that were true paraphrases (a wrong answer served is
  the complement);
- hit rate: of the true paraphrases, the share served from the cache.

The default threshold for a model is chosen on the development splits (`tune` and `dev`,
see `data.py`): the lowest one from which every higher threshold keeps guarded precision at
99 % or more. Its figures on the `held` split, never looked at while writing the guard or
choosing, are the ones to quote.

    python -m bench.semantic.run [--models minilm,wordllama] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: small matmuls, 2 cores

import numpy as np

from bench.semantic.data import Pair, load
from bench.semantic.models import MODELS, check_minilm
from genai_api.semantic.config import DEFAULT_THRESHOLD
from genai_api.semantic.guard import RULES, differences, features, same_words

TARGET = 0.99
GRID = [round(0.50 + 0.01 * i, 2) for i in range(50)]
SHOWN = [round(0.60 + 0.02 * i, 2) for i in range(20)]


@dataclass(frozen=True, slots=True)
class Scored:
    pair: Pair
    similarity: float
    reasons: tuple[str, ...]  # every guard rule that refuses this pair
    words: bool  # the strict policy's check: the same content words

    @property
    def guard(self) -> str | None:
        return self.reasons[0] if self.reasons else None


@dataclass(frozen=True, slots=True)
class Point:
    hits: int
    false: int
    paraphrases: int

    @property
    def precision(self) -> float:
        return 1.0 if not self.hits else (self.hits - self.false) / self.hits

    @property
    def hit_rate(self) -> float:
        return (self.hits - self.false) / self.paraphrases if self.paraphrases else 0.0

    def cell(self) -> str:
        return f"{self.precision:6.1%} {self.hit_rate:6.1%} {self.false:3d}"


def score(pairs: list[Pair], embed_name: str) -> list[Scored]:
    embed = MODELS[embed_name]()
    if embed_name == "minilm":
        check_minilm(embed)
    texts = sorted({p.cached for p in pairs} | {p.asked for p in pairs})
    vectors = dict(zip(texts, embed(texts), strict=True))
    out = []
    for p in pairs:
        similarity = float(np.dot(vectors[p.cached], vectors[p.asked]))
        a, b = features(p.cached), features(p.asked)
        out.append(Scored(p, similarity, tuple(differences(a, b)), same_words(a, b)))
    return out


SEEN = ("tune", "dev")
HELD = ("held",)


def point(
    scored: list[Scored],
    splits: tuple[str, ...],
    threshold: float,
    guarded: bool,
    without: str | None = None,
    strict: bool = False,
) -> Point:
    """Hits at `threshold`; `guarded`: the guard vetoes, less its rule `without`;
    `strict`: the prompts must also hold the same content words."""
    rows = [s for s in scored if s.pair.split in splits]
    hits = [
        s
        for s in rows
        if s.similarity >= threshold
        and not (guarded and any(r != without for r in s.reasons))
        and (s.words or not strict)
    ]
    return Point(
        hits=len(hits),
        false=sum(not s.pair.hit for s in hits),
        paraphrases=sum(s.pair.hit for s in rows),
    )


def default_threshold(scored: list[Scored], strict: bool = False) -> float | None:
    """The lowest threshold from which guarded precision on tune+dev stays >= TARGET."""
    chosen = None
    for t in reversed(GRID):
        if point(scored, SEEN, t, guarded=True, strict=strict).precision < TARGET:
            break
        chosen = t
    return chosen


def best_unguarded(scored: list[Scored], splits: tuple[str, ...]) -> tuple[float, Point]:
    points = [(t, point(scored, splits, t, guarded=False)) for t in GRID]
    return max(points, key=lambda tp: (tp[1].precision, tp[1].hit_rate))


def report(name: str, scored: list[Scored], markdown: bool) -> None:
    out = sys.stdout.write
    base = Counter(s.pair.hit for s in scored if s.pair.split == "held")
    out(f"\n### {name}\n\n")
    out(
        f"held-out split: {base[True]} paraphrases, {base[False]} near-misses "
        f"(base precision {base[True] / max(1, sum(base.values())):.1%})\n\n"
    )
    head = (
        "| threshold | cosine: tune+dev | cosine: held | + guard: tune+dev | + guard: held "
        "| strict: tune+dev | strict: held |"
    )
    out(head + "\n" + "|---" * 7 + "|\n" if markdown else head + "\n")
    for t in SHOWN:
        cells = [
            point(scored, split, t, guarded, strict=strict).cell()
            for guarded, strict in ((False, False), (True, False), (True, True))
            for split in (SEEN, HELD)
        ]
        out(f"| {t:.2f} | " + " | ".join(cells) + " |\n")
    out("\n(each cell: precision, hit rate, false hits)\n\n")
    t_best, p_best = best_unguarded(scored, HELD)
    out(
        f"- cosine alone, best held-out precision over every threshold: "
        f"{p_best.precision:.1%} at {t_best:.2f} (hit rate {p_best.hit_rate:.1%})\n"
    )
    strict = default_threshold(scored, strict=True)
    if strict is not None:
        dev = point(scored, SEEN, strict, True, strict=True)
        held_s = point(scored, HELD, strict, True, strict=True)
        out(
            f"- strict (guard + same content words), lowest threshold keeping tune+dev at "
            f">= 99 %: {strict:.2f}; tune+dev {dev.precision:.1%} precision, "
            f"{dev.hit_rate:.1%} hit rate; **held-out {held_s.precision:.1%} precision, "
            f"{held_s.hit_rate:.1%} hit rate**\n"
        )
    t = DEFAULT_THRESHOLD
    dev, held_d = (
        point(scored, SEEN, t, True, strict=True),
        point(scored, HELD, t, True, strict=True),
    )
    out(
        f"- the gateway's defaults (strict, threshold {t:.2f}): tune+dev {dev.precision:.1%} "
        f"precision, {dev.hit_rate:.1%} hit rate, {dev.false} false hits; **held-out "
        f"{held_d.precision:.1%} precision, {held_d.hit_rate:.1%} hit rate, {held_d.false} "
        f"false hits**\n"
    )
    chosen = default_threshold(scored)
    if chosen is None:
        out("- no threshold reaches 99 % guarded precision on tune+dev\n")
        return
    tune, held = point(scored, SEEN, chosen, True), point(scored, HELD, chosen, True)
    plain = point(scored, HELD, chosen, False)
    out(
        f"- default threshold (chosen on tune+dev): {chosen:.2f}; "
        f"tune+dev {tune.precision:.1%} precision, {tune.hit_rate:.1%} hit rate; "
        f"**held-out {held.precision:.1%} precision, {held.hit_rate:.1%} hit rate**; "
        f"the same threshold without the guard: {plain.precision:.1%}, {plain.hit_rate:.1%}\n"
    )
    out(
        "- what each rule adds, on held-out at that threshold (precision, hit rate, false "
        "hits without it):\n"
    )
    for rule in RULES:
        out(f"  - without `{rule}`: {point(scored, HELD, chosen, True, rule).cell()}\n")
    reasons = Counter(s.guard for s in scored if s.guard and not s.pair.hit)
    out(f"- near-misses the guard refuses (every split), by reason: {dict(reasons)}\n")
    lost = Counter(s.guard for s in scored if s.guard and s.pair.hit)
    out(
        f"- paraphrases it refuses too (a provider call each, never a wrong answer): "
        f"{sum(lost.values())} of {sum(s.pair.hit for s in scored)} {dict(lost)}\n"
    )
    wrong = [
        s
        for s in scored
        if s.pair.split == "held" and not s.pair.hit and s.similarity >= chosen and not s.guard
    ]
    for s in wrong:
        out(
            f"  - held-out false hit ({s.pair.kind}, {s.similarity:.3f}): "
            f"{s.pair.cached!r} -> {s.pair.asked!r}\n"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="minilm,wordllama")
    parser.add_argument("--markdown", action="store_true", help="markdown table rows")
    args = parser.parse_args(argv)
    pairs = load()
    print(f"{len(pairs)} labelled pairs; target precision {TARGET:.0%}")
    for name in args.models.split(","):
        started = time.perf_counter()
        scored = score(pairs, name)
        report(name, scored, args.markdown)
        print(f"({name}: {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
