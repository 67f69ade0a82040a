"""The built-in model table, its override file, and exact prices."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from genai_api.errors import NotFound
from genai_api.models.table import ModelTable


def test_builtin_table_has_chat_and_embedding_models() -> None:
    table = ModelTable.load(None)
    assert table.get("gpt-4o-mini").input_per_million == Decimal("0.15")
    assert table.get("text-embedding-3-small").output_per_million == Decimal(0)
    assert not table.closed


def test_cost_is_exact_decimal() -> None:
    model = ModelTable.load(None).get("gpt-4o-mini")
    assert model.cost(1_000_000, 1_000_000) == Decimal("0.75")
    assert sum((model.cost(1, 0) for _ in range(10)), Decimal(0)) == Decimal("0.0000015")


def test_unknown_model_falls_back_on_open_list() -> None:
    info = ModelTable.load(None).get("my-local-llama")
    assert info.ttl is None and info.cost(100, 100) == 0


def test_toml_file_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[models."gpt-4o-mini"]\nttl = 60\ninput_per_million = "1.5"\n'
        '[models."local-llama"]\nttl = 10\ntokenizer = "cl100k_base"\n'
    )
    table = ModelTable.load(path)
    mini = table.get("gpt-4o-mini")
    assert (mini.ttl, mini.input_per_million, mini.output_per_million) == (
        60,
        Decimal("1.5"),
        Decimal("0.60"),
    )
    assert table.get("local-llama").ttl == 10
    assert table.get("gpt-4o").ttl is None


def test_yaml_file_can_close_the_list(tmp_path: Path) -> None:
    path = tmp_path / "models.yml"
    path.write_text("closed: true\nbuiltin: false\nmodels:\n  only-model:\n    ttl: 5\n")
    table = ModelTable.load(path)
    assert [m.name for m in table] == ["only-model"]
    with pytest.raises(NotFound):
        table.get("gpt-4o-mini")


def test_invalid_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."m"]\nttl = 0\n')
    with pytest.raises(ValueError, match="ttl"):
        ModelTable.load(path)
