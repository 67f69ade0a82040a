"""The lexical guard: each rule refuses the near-miss it is for and lets a paraphrase by."""

from __future__ import annotations

import pytest

from genai_api.semantic.guard import compatible, features, same_words


def why(a: str, b: str, *, strict: bool = False) -> str | None:
    return compatible(features(a), features(b), strict=strict)


@pytest.mark.parametrize(
    ("cached", "asked", "reason"),
    [
        (
            "How many grams are in 3 cups of flour?",
            "How many grams are in 2 cups of flour?",
            "numbers",
        ),
        ("Convert 5 kilometers to miles.", "Convert five kilometers to miles.", None),
        ("Is it safe to eat raw eggs?", "Why is it not safe to eat raw eggs?", "negation"),
        ("Can dogs eat grapes?", "Why can't dogs eat grapes?", "negation"),
        ("How do I enable 2FA?", "How do I disable 2FA?", "polarity"),
        ("How do I enable 2FA?", "How do I turn on 2FA?", None),
        ("Add 2 tablespoons of oil.", "Add 2 teaspoons of oil.", "units"),
        ("Who wrote 1984?", "When was 1984 written?", "question"),
        ("What is the capital of Australia?", "What is the capital of Austria?", "names"),
        ("Rename user_id in this function.", "Rename customer_id in this function.", "names"),
        ("Quelle est la capitale de la France ?", "What is the capital of France?", "language"),
        (
            "How do I convert JSON to CSV in Python?",
            "How do I convert CSV to JSON in Python?",
            "order",
        ),
        ("Did Alice pay Bob?", "Did Bob pay Alice?", "order"),
        ("Fly from Chicago to Denver or drive?", "Fly from Denver to Chicago or drive?", "order"),
        ("How many ounces are in a pound?", "How many pounds are in an ounce?", "order"),
        ("What is the capital of Australia?", "Australia's capital city is what?", None),
        ("Should I use tabs or spaces in Python?", "Spaces or tabs in Python?", None),
        ("How do I install numpy with pip?", "Install numpy using pip", None),
    ],
)
def test_each_rule(cached: str, asked: str, reason: str | None) -> None:
    assert why(cached, asked) == reason


def test_the_strict_policy_also_wants_the_same_content_words() -> None:
    assert why("Install numpy with pip", "Install numpy with conda", strict=True) == "words"
    assert why("Install numpy with pip", "How do I install numpy using pip?", strict=True) is None
    assert same_words(features("Install numpy with pip"), features("pip: install NumPy"))


def test_the_guard_is_symmetric_enough_to_refuse_either_way() -> None:
    a, b = "How do I start the Docker daemon?", "How do I stop the Docker daemon?"
    assert why(a, b) == why(b, a) == "polarity"
