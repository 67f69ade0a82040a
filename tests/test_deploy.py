"""The Dockerfile, docker-compose.yml and the wheel, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from genai_api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Variables a base image or Python itself defines; anything else an image sets is ours.
_RUNTIME_VARS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR"}
_RUNTIME_VARS |= {"PIP_DISABLE_PIP_VERSION_CHECK"}
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, `\\` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        command, _, args = (pending + line).partition(" ")
        out.append((command.upper(), args.strip()))
        pending = ""
    return out


def _env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M))


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _runtime_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (cmd, _) in enumerate(instructions) if cmd == "FROM")
    return instructions[last_from:]


def json_argv(args: str) -> list[str]:
    """A CMD in exec form (JSON array) or shell form, as argv."""
    try:
        value = json.loads(args)
    except ValueError:
        return shlex.split(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_dockerfile_parser_joins_continuations() -> None:
    parsed = dockerfile_instructions("# c\nFROM x\nRUN a \\\n  # note\n  && b\n")
    assert parsed == [("FROM", "x"), ("RUN", "a && b")]


def test_image_is_slim_python(dockerfile: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for cmd, args in dockerfile if cmd == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", b) for b in bases)


def test_image_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for cmd, args in _runtime_stage(dockerfile) if cmd == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(args for cmd, args in dockerfile if cmd == "RUN")
    assert "useradd" in created and user in created


def test_healthcheck_asks_healthz(dockerfile: list[tuple[str, str]]) -> None:
    checks = [args for cmd, args in _runtime_stage(dockerfile) if cmd == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0] and "CMD" in checks[0]


def test_command_serves_on_all_interfaces(dockerfile: list[tuple[str, str]]) -> None:
    cmd = [args for c, args in _runtime_stage(dockerfile) if c == "CMD"][-1]
    argv = json_argv(cmd)
    assert argv[:2] == ["genai-api", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_image_installs_the_package_and_ships_prompts(dockerfile: list[tuple[str, str]]) -> None:
    copies = [args for cmd, args in dockerfile if cmd == "COPY"]
    assert any(c.split()[0] == "genai_api" for c in copies)
    assert any("prompts" in c.split()[0] or " prompts" in f" {c}" for c in copies)
    assert any("pip install ." in args for cmd, args in dockerfile if cmd == "RUN")


def test_dockerfile_variables_are_documented(dockerfile: list[tuple[str, str]]) -> None:
    documented = _env_example()
    used = set()
    for cmd, args in dockerfile:
        if cmd in ("ENV", "ARG"):
            used |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
        used |= set(_VAR.findall(args))
    assert used - _RUNTIME_VARS <= documented, used - _RUNTIME_VARS - documented


def test_dockerignore_keeps_secrets_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored


def test_compose_variables_are_in_env_example(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "compose uses no variables at all?"
    assert used <= _env_example(), used - _env_example()
    assert used <= {name.upper() for name in Settings.model_fields}


def test_compose_runs_api_redis_and_redisinsight(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"api", "redis", "redisinsight"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
    assert {"redis-data", "redisinsight-data"} <= set(compose["volumes"])


def test_compose_redis_requires_the_password(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD")
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")


def test_compose_redis_evicts_only_entries_and_keeps_the_savings(compose: dict[str, Any]) -> None:
    """volatile-lru evicts only keys with a TTL (every entry), never the savings counters
    (none has one); append-only persistence keeps their history across a restart."""
    command = compose["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--maxmemory-policy"] == "volatile-lru"
    assert flags["--maxmemory"] and flags["--appendonly"] == "yes"


def test_compose_api_uses_redis_with_the_password(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    env = api["environment"]
    assert env["CACHE_BACKEND"] == "redis"
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/\d+", env["REDIS_URL"])
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["build"] == "." and "8000:8000" in api["ports"]


def test_compose_redisinsight_is_connected(compose: dict[str, Any]) -> None:
    insight = compose["services"]["redisinsight"]
    assert insight["environment"]["RI_REDIS_HOST"] == "redis"
    assert insight["environment"]["RI_REDIS_PASSWORD"].startswith("${REDIS_PASSWORD")
    assert any(v.endswith(":/data") for v in insight["volumes"])


@pytest.mark.slow
def test_wheel_carries_the_tokenizer_data(tmp_path: Path) -> None:
    if subprocess.run([sys.executable, "-c", "import wheel"], check=False).returncode:
        pytest.fail("the 'wheel' package (dev extra) is needed to build the wheel offline")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "genai_api", source / "genai_api", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(tmp_path / "dist"), str(source)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("genai_api-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {
        f"genai_api/data/tiktoken/{p.name}"
        for p in (ROOT / "genai_api" / "data" / "tiktoken").iterdir()
        if p.is_file()
    }
    assert packaged and packaged <= names


@pytest.fixture(scope="module")
def cluster_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    return data


def _addresses(service: dict[str, Any]) -> set[str]:
    return {net["ipv4_address"] for net in service["networks"].values() if net}


def test_cluster_compose_runs_the_api_on_three_primaries_and_three_replicas(
    cluster_compose: dict[str, Any],
) -> None:
    services = cluster_compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("redis-")}
    assert set(services) == {"api", "cluster-init", *nodes} and len(nodes) == 6
    addresses = set().union(*(_addresses(s) for s in nodes.values()))
    assert len(addresses) == 6
    create = " ".join(services["cluster-init"]["entrypoint"])
    assert "--cluster create" in create and "--cluster-replicas 1" in create
    assert {a for a in addresses if f"{a}:6379" in create} == addresses
    for name, node in nodes.items():
        command = node["command"]
        flags = dict(zip(command[1::2], command[2::2], strict=True))
        assert flags["--cluster-enabled"] == "yes", name
        assert flags["--requirepass"].startswith("${REDIS_PASSWORD"), name
        assert flags["--masterauth"].startswith("${REDIS_PASSWORD"), name  # replicas sync
        assert flags["--cluster-require-full-coverage"] == "no", name
        assert flags["--maxmemory-policy"] == "volatile-lru", name  # never the counters
        assert flags["--maxmemory"] and flags["--appendonly"] == "yes", name
        assert "healthcheck" in node and any(v.endswith(":/data") for v in node["volumes"])
        assert services["cluster-init"]["depends_on"][name]["condition"] == "service_healthy"


def test_cluster_compose_api_uses_the_cluster_with_the_password(
    cluster_compose: dict[str, Any],
) -> None:
    api = cluster_compose["services"]["api"]
    env = api["environment"]
    assert (env["CACHE_BACKEND"], env["REDIS_MODE"]) == ("redis", "cluster")
    found = re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@([\d.]+):6379/0", env["REDIS_URL"])
    assert found is not None
    nodes = cluster_compose["services"]
    seeds = {found.group(1), *(a.split(":")[0] for a in env["REDIS_CLUSTER_NODES"].split(","))}
    assert seeds <= set().union(*(_addresses(s) for n, s in nodes.items() if n != "api"))
    assert api["depends_on"]["cluster-init"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["build"] == "." and "8000:8000" in api["ports"]
    settings = Settings(  # what the API reads from it is a valid configuration
        _env_file=None,  # type: ignore[call-arg]
        cache_backend="redis",
        redis_mode="cluster",
        redis_url=env["REDIS_URL"].replace("${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}", "pw"),
        redis_cluster_nodes=env["REDIS_CLUSTER_NODES"],
    )
    assert settings.cluster


def test_cluster_compose_variables_are_in_env_example() -> None:
    text = (ROOT / "docker-compose.cluster.yml").read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used == {"REDIS_PASSWORD"} and used <= _env_example()
