"""The models file's `semantic` setting: checked key by key, off unless given."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_api.errors import ConfigError
from genai_api.models.table import ModelTable
from genai_api.semantic.config import DEFAULT_THRESHOLD, SemanticConfig


def load(tmp_path: Path, text: str) -> ModelTable:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return ModelTable.load(path)


def test_off_unless_a_model_opts_in(tmp_path: Path) -> None:
    table = load(tmp_path, '[models."gpt-4o-mini"]\nttl = 60\n')
    assert table.get("gpt-4o-mini").semantic is None and table.semantic == []


def test_defaults(tmp_path: Path) -> None:
    table = load(
        tmp_path,
        '[models."gpt-4o-mini"]\nsemantic = { embedding_model = "text-embedding-3-small" }\n',
    )
    assert table.get("gpt-4o-mini").semantic == SemanticConfig(
        "text-embedding-3-small", DEFAULT_THRESHOLD, True
    )


@pytest.mark.parametrize(
    ("semantic", "says"),
    [
        ("{ threshold = 0.9 }", "embedding_model: must name the embedding model"),
        (
            '{ embedding_model = "e", threshold = 1.5 }',
            "threshold: must be a number between 0 and 1",
        ),
        ('{ embedding_model = "e", threshold = "0.9" }', "threshold: must be a number"),
        ('{ embedding_model = "e", strict = "no" }', "strict: must be true or false"),
        ('{ embedding_model = "e", treshold = 0.9 }', "unknown key 'treshold' (did you mean"),
        ('"on"', "must be a table"),
    ],
)
def test_every_mistake_is_one_line_naming_model_and_key(
    tmp_path: Path, semantic: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[models."gpt-4o-mini"]\nsemantic = {semantic}\n')
    (line,) = caught.value.problems
    assert "model 'gpt-4o-mini': semantic: " in line and says in line


def test_a_closed_table_must_list_the_embedding_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedding_model 'e' is not in the models table"):
        load(
            tmp_path,
            'closed = true\nbuiltin = false\n[models."m"]\nsemantic = { embedding_model = "e" }\n',
        )
