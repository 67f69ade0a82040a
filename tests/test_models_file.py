"""The models file's checks: every problem one line naming the file, the model and the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from genai_api.errors import ConfigError
from genai_api.models.file import read_models_file
from genai_api.models.table import ModelTable
from genai_api.savings.tokenizer import DEFAULT_ENCODINGS, TokenCounter


def _file(tmp_path: Path, text: str, name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        read_models_file(path)
    return caught.value.problems


def test_a_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        read_models_file(path)
    assert caught.value.problems == (f"{path}: cannot be read: No such file or directory",)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("models.toml", '[models."m"\nttl = 1\n', "not valid TOML: Expected ']'"),
        ("models.yaml", "models:\n  m: [1\n", "not valid YAML: expected ',' or ']'"),
    ],
)
def test_a_syntax_error_is_one_line_naming_the_file_and_the_place(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_models_file(path)
    (line,) = caught.value.problems
    assert line.startswith(f"{path}: {problem}") and "line " in line and "\n" not in line


@pytest.mark.parametrize("price", ['"-5"', "-0.01", '"NaN"', '"Infinity"', '"cheap"', "true"])
def test_a_price_must_be_a_number_of_at_least_zero(tmp_path: Path, price: str) -> None:
    path = _file(tmp_path, f'[models."gpt-4o-mini"]\ninput_per_million = {price}\n')
    (problem,) = _problems(path)
    assert problem.startswith(
        f"{path}: model 'gpt-4o-mini': input_per_million: must be a number >= 0"
    )


def test_a_price_may_be_a_string_or_a_number(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[models.a]\ninput_per_million = "0.15"\noutput_per_million = 0.6\n'
        '[models.b]\ninput_per_million = 2\noutput_per_million = "-0"\n',
    )
    table = ModelTable.load(path)
    assert (table.get("a").input_per_million, table.get("a").output_per_million) == (
        Decimal("0.15"),
        Decimal("0.6"),
    )
    assert (table.get("b").input_per_million, str(table.get("b").output_per_million)) == (
        Decimal(2),
        "0",
    )


@pytest.mark.parametrize("key", ["closed", "builtin"])
def test_the_switches_must_be_booleans_not_strings(tmp_path: Path, key: str) -> None:
    path = _file(tmp_path, f'{key} = "false"\n')
    assert _problems(path) == (f"{path}: {key}: must be true or false, unquoted (got 'false')",)


def test_an_unknown_model_key_is_named_with_its_model_and_a_suggestion(tmp_path: Path) -> None:
    path = _file(tmp_path, '[models."gpt-4o"]\nttll = 60\n')
    assert _problems(path) == (f"{path}: model 'gpt-4o': unknown key 'ttll' (did you mean 'ttl'?)",)


def test_an_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = _file(tmp_path, "close = true\n")
    assert _problems(path) == (f"{path}: unknown key 'close' (did you mean 'closed'?)",)


def test_a_tokenizer_the_gateway_does_not_ship_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, "models:\n  local-llama:\n    tokenizer: nope_base\n", "models.yaml")
    (problem,) = _problems(path)
    assert problem == (
        f"{path}: model 'local-llama': tokenizer: must be one of "
        f"{', '.join(DEFAULT_ENCODINGS)} (got 'nope_base')"
    )


@pytest.mark.parametrize("name", DEFAULT_ENCODINGS)
def test_every_accepted_tokenizer_is_loaded_offline_at_start_up(tmp_path: Path, name: str) -> None:
    table = ModelTable.load(_file(tmp_path, f'[models.m]\ntokenizer = "{name}"\n'))
    tokenizer = table.get("m").tokenizer
    assert tokenizer is not None
    assert TokenCounter.load().count_text("hello world", "m", tokenizer) == 2


@pytest.mark.parametrize("ttl", ["0", "-3", "1.5", "true", '"soon"'])
def test_ttl_must_be_a_whole_number_of_seconds(tmp_path: Path, ttl: str) -> None:
    path = _file(tmp_path, f"[models.m]\nttl = {ttl}\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: model 'm': ttl: must be a whole number of seconds")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        'closed = "yes"\n[models.a]\nttl = 0\n[models.b]\nowned_by = ""\nfoo = 1\n',
    )
    wheres = ["closed:", "model 'a': ttl:", "model 'b': owned_by:", "model 'b': unknown key 'foo'"]
    problems = _problems(path)
    assert len(problems) == len(wheres)
    for problem, where in zip(problems, wheres, strict=True):
        assert problem.startswith(f"{path}: {where}")


def test_a_yaml_model_with_nothing_under_it_gets_the_defaults(tmp_path: Path) -> None:
    path = _file(tmp_path, "models:\n  my-vllm-model:\n", "models.yaml")
    assert ModelTable.load(path).get("my-vllm-model").ttl is None


# --- upstreams per model (CONTRACT §7)


def _upstream(tmp_path: Path, spec: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
    path = _file(tmp_path, f'[models."llama"]\n{spec}\n')
    with pytest.raises(ConfigError) as caught:
        read_models_file(path, environ=env or {})
    return tuple(p.removeprefix(f"{path}: ") for p in caught.value.problems)


@pytest.mark.parametrize(
    "url", ['"ftp://vllm/v1"', '"vllm:8000/v1"', '"http://"', '"http://h:port/v1"', "8000"]
)
def test_a_base_url_must_be_an_http_url(tmp_path: Path, url: str) -> None:
    (problem,) = _upstream(tmp_path, f"base_url = {url}")
    assert problem.startswith("model 'llama': base_url: must be an http:// or https:// URL")


def test_a_base_url_may_not_carry_credentials_and_they_are_not_echoed(tmp_path: Path) -> None:
    (problem,) = _upstream(tmp_path, 'base_url = "https://user:s3cr3t-pw@vllm/v1"')
    assert problem == (
        "model 'llama': base_url: must not hold credentials: name the key's variable in api_key_env"
    )


def test_an_api_key_env_that_is_not_set_is_named_with_its_variable(tmp_path: Path) -> None:
    spec = 'base_url = "http://vllm:8000/v1"\napi_key_env = "VLLM_API_KEY"'
    assert _upstream(tmp_path, spec, {"OTHER": "x"}) == (
        "model 'llama': api_key_env: the variable VLLM_API_KEY is not set",
    )


def test_a_key_pasted_into_api_key_env_is_refused_without_being_echoed(tmp_path: Path) -> None:
    (problem,) = _upstream(tmp_path, 'api_key_env = "sk-proj-Abc123-def456"')
    assert problem == (
        "model 'llama': api_key_env: must be the name of an environment variable, e.g. VLLM_API_KEY"
    )
    assert "Abc123" not in problem


def test_an_api_key_env_is_found_in_the_environment_or_in_dot_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FROM_DOTENV", raising=False)
    monkeypatch.setenv("FROM_ENV", "k1")
    (tmp_path / ".env").write_text("FROM_DOTENV=k2\n")
    path = _file(
        tmp_path, '[models.a]\napi_key_env = "FROM_ENV"\n[models.b]\napi_key_env = "FROM_DOTENV"\n'
    )
    assert read_models_file(path).models["b"]["api_key_env"] == "FROM_DOTENV"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('"gpt-4o-mini"', 'must be a list of model names, e.g. ["gpt-4o-mini"]'),
        ('["gpt-4o-mini", ""]', "must be a list of model names"),
        ('["gpt-4o-mini", "gpt-4o-mini"]', "names a model twice"),
    ],
)
def test_fallbacks_must_be_a_list_of_names(tmp_path: Path, value: str, says: str) -> None:
    (problem,) = _upstream(tmp_path, f"fallbacks = {value}")
    assert problem.startswith(f"model 'llama': fallbacks: {says}")


def test_an_unknown_fallback_is_named(tmp_path: Path) -> None:
    path = _file(tmp_path, '[models.llama]\nfallbacks = ["gpt-4o-mini", "gpt-9"]\n')
    with pytest.raises(ConfigError) as caught:
        ModelTable.load(path)
    assert caught.value.problems == (
        f"{path}: model 'llama': fallbacks: unknown model 'gpt-9' (not in the table)",
    )


def test_a_fallback_cycle_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[models.a]\nfallbacks = ["b"]\n[models.b]\nfallbacks = ["gpt-4o", "c"]\n'
        '[models.c]\nfallbacks = ["a"]\n[models.d]\nfallbacks = ["d"]\n',
    )
    with pytest.raises(ConfigError) as caught:
        ModelTable.load(path)
    assert caught.value.problems == (
        f"{path}: model 'a': fallbacks: a cycle (a -> b -> c -> a)",
        f"{path}: model 'd': fallbacks: a cycle (d -> d)",
    )


def test_a_fallback_to_a_builtin_model_needs_the_builtin_table(tmp_path: Path) -> None:
    path = _file(tmp_path, 'builtin = false\n[models.a]\nfallbacks = ["gpt-4o-mini"]\n')
    with pytest.raises(ConfigError):
        ModelTable.load(path)
    ok = _file(tmp_path, '[models.a]\nfallbacks = ["gpt-4o-mini"]\n', "ok.toml")
    assert ModelTable.load(ok).get("a").fallbacks == ("gpt-4o-mini",)
