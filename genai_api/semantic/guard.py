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
    """ "Australia's capital" read as "capital of Australia", so that a possessive is the
    same relation as its "of" paraphrase for the order and role checks."""
    owners = {_stem(m) for m in re.findall(r"([^\W_]+)'s\b", text)}
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in owners and i + 1 < len(words) and words[i + 1] not in STOPWORDS:
            out += [words[i + 1], "of", words[i]]
            i += 2
        else:
            out.append(words[i])
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


def _roles(f: Features) -> tuple[list[str], dict[str, str]]:
    """The content words outside context phrases, in order (relation words kept as
    separators), and each content word's role: the relation word it is the object of
    ("to", "from", "than", "of", ...), "context" inside a context phrase ("in Python",
    "with the AWS CLI"), else "core". Either side of a coordination of two content words
    ("tabs or spaces") is left out of the order: its place is free."""
    words = f.words
    free = set()
    for i, word in enumerate(words):
        if word in COORDINATORS and 0 < i < len(words) - 1:
            j = i + 1
            while j < len(words) - 1 and words[j] in DETERMINERS:
                j += 1
            if words[i - 1] not in STOPWORDS and words[j] not in STOPWORDS:
                free |= {i - 1, j}
    order: list[str] = []
    roles: dict[str, str] = {}
    role = "core"
    for i, word in enumerate(words):
        if word in CONTEXT:
            role = "context"
        elif word in RELATIONS:
            role = "to" if word == "into" else word
            order.append(role)
        elif word in STOPWORDS:
            if word not in DETERMINERS:
                role = "core"
        else:
            roles.setdefault(word, role)
            if role != "context" and i not in free:
                order.append(word)
            if role != "context":
                role = "core"
    return order, roles


def _swapped(a: Features, b: Features) -> bool:
    """Roles changed: a shared word the object of two different relations ("to Sarah" /
    "Sarah's report": of), two shared words that exchange roles ("from Chicago to Denver" /
    "from Denver to Chicago"; "ounces in a pound" / "pounds in an ounce"), or two in
    opposite orders with a word or a relation between them in `a` ("dog chase cat").
    A word moving alone between a context phrase and the rest ("Python: ..." / "... in
    Python"), or two adjacent words trading places ("number 17" / "17 ... number") is not
    a change of roles."""
    (ca, ra), (cb, rb) = _roles(a), _roles(b)
    both = sorted(ra.keys() & rb.keys())
    for i, x in enumerate(both):
        if ra[x] != rb[x] and ra[x] in RELATIONS and rb[x] in RELATIONS:
            return True
        for y in both[i + 1 :]:
            if ra[x] != ra[y] and ra[x] == rb[y] and ra[y] == rb[x]:
                return True
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


def same_words(a: Features, b: Features) -> bool:
    """The strict policy: both prompts hold the same content words (in any inflection
    and, within the order rules, any order); only function words, punctuation, case and
    context-phrase placement differ ("How do I install numpy with pip?" / "Install numpy
    using pip")."""
    return {w for w in a.words if w not in STOPWORDS} == {w for w in b.words if w not in STOPWORDS}


def compatible(a: Features, b: Features, *, strict: bool = False) -> str | None:
    """None when nothing lexical tells the two prompts apart, else the first reason."""
    found = differences(a, b)
    if strict and not found and not same_words(a, b):
        return "words"
    return found[0] if found else None


RULES = ("language", "numbers", "negation", "polarity", "units", "question", "names", "order")
