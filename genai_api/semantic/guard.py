"""The lexical guard: a cheap veto on a semantic hit whose wording changes the answer.

Why: embedding similarity is blind to exactly the edits that flip an answer. A bag-of-tokens
model scores "convert an int to a string" and "a string to an int" 1.0; a transformer puts
"enable 2FA" nearer "disable 2FA" than "turn on 2FA". So before a cached answer is served
for a prompt that is only *similar*, `compatible` compares what a paraphrase keeps and a
near-miss changes, and refuses on any difference in:

- numbers (digits and number words: "3 cups" / "2 cups", "Windows 10" / "Windows 11"),
  and units ("2 tablespoons" / "2 teaspoons", "in miles per hour");
- the question word: who, when, where, why ("who wrote 1984" / "when was 1984 written");
- negation ("is it safe" / "why is it not safe", "can" / "can't");
- polar words, by class and pole ("enable" = "turn on" ≠ "disable"; before/after,
  upload/download, encrypt/decrypt, ascending/descending, north/south, ...);
- names and identifiers: capitalised words past the first, all-caps and code-shaped tokens
  (`user_id`, `tar.gz`, `sin(x)`), quoted text; each must appear in the other prompt;
- the language the prompt is written in;
- role order: two content words both prompts share, in the opposite order ("convert JSON
  to CSV" / "CSV to JSON", "Did Alice pay Bob" / "Did Bob pay Alice").

It refuses some true paraphrases (a passive voice, "2FA" for "two-factor"): a refusal costs
one provider call, a wrong hit serves a wrong answer. `make bench-semantic` measures both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from genai_api.semantic.lexicon import (
    ASKS,
    CONTEXT,
    COORDINATORS,
    DETERMINERS,
    LANGUAGES,
    NEGATIONS,
    NUMBER_WORDS,
    PHRASES,
    POLES,
    RELATIONS,
    STOPWORDS,
    UNITS,
)

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?|\d+(?:[.,]\d+)?", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]+)[\"“”«»]")
_CODE = re.compile(r"\w+(?:[._]\w+)+|\w+\(.*?\)|\b[a-z]+[A-Z]\w*")


@dataclass(frozen=True, slots=True)
class Features:
    """What a prompt must share with another for one's answer to serve the other."""

    words: tuple[str, ...]  # lower-case, normalised
    numbers: tuple[str, ...]
    negations: int
    poles: tuple[tuple[str, int], ...]
    units: tuple[str, ...]
    asks: tuple[str, ...]
    names: frozenset[str]
    language: str


def _stem(word: str) -> str:
    word = word.lower().replace("\u2019", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def features(text: str) -> Features:
    lowered = text.lower().replace("\u2019", "'")
    for phrase, word in PHRASES.items():
        lowered = lowered.replace(phrase, word)
    raw = _WORD.findall(lowered)
    words = _possessives([_stem(w) for w in raw], lowered)
    numbers = sorted(
        _NUMBER.findall(lowered) + [NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS]
    )
    negations = sum(w in NEGATIONS or w.endswith("n't") for w in words)
    poles = sorted(POLES[w] for w in raw if w in POLES)  # the lexicon lists inflections
    units = sorted(UNITS[w] for w in words if w in UNITS)
    asks = sorted({ASKS[w] for w in words if w in ASKS})
    return Features(
        words,
        tuple(numbers),
        negations,
        tuple(poles),
        tuple(units),
        tuple(asks),
        _names(text),
        _language(words),
    )


def _possessives(words: list[str], text: str) -> tuple[str, ...]:
    """ "Australia's capital" in the order of "the capital of Australia", so that the
    order check does not take a possessive for a swap of roles."""
    owners = {_stem(m) for m in re.findall(r"([^\W_]+)'s\b", text)}
    out = list(words)
    i = 0
    while i < len(out) - 1:
        if out[i] in owners and out[i + 1] not in STOPWORDS:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 1
        i += 1
    return tuple(out)


def _names(text: str) -> frozenset[str]:
    """The words of names and identifiers: each must appear, in any case, in the other."""
    spans = _QUOTED.findall(text) + _CODE.findall(text)
    tokens = _WORD.findall(text)
    for i, token in enumerate(tokens):
        upper = sum(ch.isupper() for ch in token)
        mixed = any(ch.isdigit() for ch in token) and any(ch.isalpha() for ch in token)
        if upper > 1 or mixed or (upper == 1 and token[0].isupper() and i > 0):
            spans.append(token)
    names = (_stem(w) for span in spans for w in _WORD.findall(span))
    return frozenset(w for w in names if w not in STOPWORDS)  # "I", "I'm"


def _language(words: tuple[str, ...]) -> str:
    if any(ord(ch) > 0x2FF for w in words for ch in w):  # beyond Latin: its own script
        return "other-script"
    scores = {lang: sum(w in stop for w in words) for lang, stop in LANGUAGES.items()}
    best = max(scores, key=lambda lang: scores[lang])
    english = sum(w in STOPWORDS for w in words)
    return best if scores[best] >= 2 and scores[best] > english else "en"


def _content(f: Features) -> list[str]:
    """Content words in order, less those whose place is free: a context phrase ("in
    Python", "with the AWS CLI") and either side of a coordination ("tabs or spaces")."""
    out: list[str] = []
    words = f.words
    in_context = False
    for i, word in enumerate(words):
        if word in CONTEXT:
            in_context = True
            continue
        if word in STOPWORDS:
            in_context = in_context and word in DETERMINERS
            if word in RELATIONS:
                out.append(word)  # kept as a separator: see _swapped
            continue
        beside = {words[i - 1] if i else "", words[i + 1] if i + 1 < len(words) else ""}
        if not in_context and not beside & COORDINATORS:
            out.append(word)
    return out


def _swapped(a: Features, b: Features) -> bool:
    """Two content words both prompts hold once each, in opposite orders, with a word or a
    relation between them in `a` ("dog chase cat", "JSON to CSV"): adjacent words ("number
    17" / "17 ... number") may trade places in a paraphrase."""
    ca, cb = _content(a), _content(b)
    shared = [w for w in ca if w not in RELATIONS and ca.count(w) == 1 and cb.count(w) == 1]
    where_a = {w: ca.index(w) for w in shared}
    where_b = {w: cb.index(w) for w in shared}
    return any(
        where_b[x] > where_b[y] and where_a[y] - where_a[x] > 1
        for i, x in enumerate(shared)
        for y in shared[i + 1 :]
    )


def differences(a: Features, b: Features) -> list[str]:
    """Every way the two prompts differ that the guard looks at (empty: none)."""
    found = [
        name
        for name, differs in (
            ("language", a.language != b.language),
            ("numbers", a.numbers != b.numbers),
            ("negation", a.negations != b.negations),
            ("polarity", a.poles != b.poles),
            ("units", a.units != b.units),
            ("question", a.asks != b.asks),
            ("names", not a.names <= set(b.words) or not b.names <= set(a.words)),
        )
        if differs
    ]
    if _swapped(a, b):
        found.append("order")
    return found


def compatible(a: Features, b: Features) -> str | None:
    """None when nothing lexical tells the two prompts apart, else the first reason."""
    found = differences(a, b)
    return found[0] if found else None


RULES = ("language", "numbers", "negation", "polarity", "units", "question", "names", "order")
