"""`make bench`: start everything, run the scenarios side by side, print the table, judge the bars.

    python -m bench.run                      # all scenarios, ~4-5 minutes
    BENCH_ONLY=hits,misses python -m bench.run
    BENCH_SOAK_SECONDS=600 python -m bench.run   # the 10-minute soak of issue #9

Knobs (environment): BENCH_ROUNDS (5), BENCH_SECONDS per round (4), BENCH_SOAK_SECONDS (60),
BENCH_ONLY (hits, embeddings, misses, coalescing, responses, soak, fallback, cluster-hits,
cluster-coalescing, cluster-failover: the last three on a loopback Redis Cluster),
BENCH_LOG_LEVEL and BENCH_LOG_FORMAT of the gateway (default: the defaults a user gets, INFO
and text: one access line per request), BENCH_LOG_VARIANTS=0 (the chat hits also measure the
gateway at WARNING and with LOG_FORMAT=json unless this), BENCH_BEFORE=<directory> (a
checkout of another commit, e.g. `git worktree add /tmp/before <commit>`: its gateway, at
the same settings and at WARNING, joins the chat hits' rounds as `before` and `before
WARNING`), BENCH_SLIDING=1 (and the gateway with `sliding = true` for the bench's models, as
`gateway sliding`).
The server under test is pinned to core 0; wrk, Redis, the fake upstreams and this process
to core 1. Exits 1 when a bar is missed, 2 when the run could not be made. Raw figures go to
bench/results/<time>.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import cluster_scenarios, fallback, scenario_responses, scenarios, wrk
from bench.procs import ROOT, Fleet, Process, cores, free_port
from bench.report import print_table, settings_line
from bench.workload import CHAT_MODEL, EMBED_MODEL
from genai_api.settings import Settings

SCENARIOS = (
    "hits",
    "embeddings",
    "misses",
    "coalescing",
    "responses",
    "soak",
    "fallback",
    *cluster_scenarios.NAMES,
)


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": rev,
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def setup(fleet: Fleet) -> scenarios.Env:
    server_core, load_core = cores()
    if load_core is not None:
        os.sched_setaffinity(0, {int(load_core)})  # this process and the helpers it starts
    redis, redis_url = fleet.redis(load_core)
    up_port, slow_port, limit_port, gw_port, pt_port, sdk_port, ml_port, mls_port = (
        free_port() for _ in range(8)
    )
    py = fleet.python
    upstream = fleet.start(
        "upstream", py("bench.fake_upstream", "--port", str(up_port)), port=up_port, core=load_core
    )
    slow = fleet.start(
        "upstream-300ms",
        py("bench.fake_upstream", "--port", str(slow_port), "--latency-ms", "300"),
        port=slow_port,
        core=load_core,
    )
    limit = fleet.start(
        "limit",
        py("bench.limit_app", "--port", str(limit_port), "--redis", redis_url),
        port=limit_port,
        core=server_core,
    )
    namespace = f"bench{int(time.time())}"
    gateway_env = {
        "CACHE_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "CACHE_NAMESPACE": namespace,
        "PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench",
        "UPSTREAM_HTTP_CLIENT": "aiohttp",
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "GATEWAY_API_KEYS": "bench-key",
        # Set explicitly, so a LOG_LEVEL in the caller's environment cannot change them.
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL") or _default("log_level"),
        "LOG_FORMAT": os.environ.get("BENCH_LOG_FORMAT") or _default("log_format"),
    }
    gateway = fleet.start(
        "gateway",
        py("bench.gateway_server", "--port", str(gw_port)),
        port=gw_port,
        core=server_core,
        env=gateway_env,
    )
    variants = hit_variants(fleet, server_core, gateway_env)
    passthrough = fleet.start(
        "passthrough",
        py("bench.passthrough_proxy", "--port", str(pt_port), "--upstream", upstream.url),
        port=pt_port,
        core=server_core,
    )
    sdk_passthrough = fleet.start(
        "sdk-passthrough",
        py("bench.sdk_passthrough", "--port", str(sdk_port), "--upstream", upstream.url),
        port=sdk_port,
        core=server_core,
    )
    miss_limits = [
        fleet.start(
            name,
            py(
                "bench.miss_limit",
                "--port",
                str(port),
                "--upstream",
                upstream.url,
                "--redis",
                redis_url,
                "--provider",
                provider,
            ),
            port=port,
            core=server_core,
        )
        for name, port, provider in (
            ("miss-limit", ml_port, "aiohttp"),
            ("miss-limit-sdk", mls_port, "sdk"),
        )
    ]
    return scenarios.Env(
        fleet=fleet,
        server_core=server_core,
        load_core=load_core,
        redis=redis,
        redis_url=redis_url,
        upstream=upstream,
        slow_upstream=slow,
        limit=limit,
        gateway=gateway,
        passthrough=passthrough,
        sdk_passthrough=sdk_passthrough,
        miss_limit=miss_limits[0],
        miss_limit_sdk=miss_limits[1],
        namespace=namespace,
        gateway_env=gateway_env,
        hit_variants=variants,
        rounds=int(os.environ.get("BENCH_ROUNDS", "5")),
        seconds=float(os.environ.get("BENCH_SECONDS", "4")),
        soak_seconds=float(os.environ.get("BENCH_SOAK_SECONDS", "60")),
    )


def _default(field: str) -> str:
    return str(Settings.model_fields[field].default)


def hit_variants(fleet: Fleet, core: str | None, gateway_env: dict[str, str]) -> dict[str, Process]:
    """More gateways for the chat hits' rounds: the same at WARNING and with LOG_FORMAT=json,
    and another checkout's (`BENCH_BEFORE`) at the same settings and at WARNING."""
    wanted: list[tuple[str, dict[str, str], Path | None]] = []
    if os.environ.get("BENCH_LOG_VARIANTS", "1") != "0":
        wanted += [
            ("gateway WARNING", {"LOG_LEVEL": "WARNING"}, None),
            ("gateway json", {"LOG_FORMAT": "json"}, None),
        ]
    if os.environ.get("BENCH_SLIDING") == "1":
        models = fleet.workdir / "sliding.toml"
        models.write_text(
            "".join(f'[models."{m}"]\nsliding = true\n' for m in (CHAT_MODEL, EMBED_MODEL))
        )
        wanted.append(("gateway sliding", {"MODELS_FILE": str(models)}, None))
    before = os.environ.get("BENCH_BEFORE")
    if before:
        warning = {"LOG_LEVEL": "WARNING"}
        wanted += [("before", {}, Path(before)), ("before WARNING", warning, Path(before))]
    started = {}
    for label, changes, cwd in wanted:
        port = free_port()
        started[label] = fleet.start(
            label.replace(" ", "-"),
            fleet.python("bench.gateway_server", "--port", str(port)),
            port=port,
            core=core,
            env={**gateway_env, **changes},
            cwd=cwd,
        )
    return started


def main() -> int:
    if not wrk.available():
        print(wrk.INSTALL_HINT, file=sys.stderr)
        return 2
    only = [s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()]
    chosen = [s for s in SCENARIOS if not only or s in only]
    fleet = Fleet()
    started = time.time()
    report: dict[str, Any] = {
        "machine": machine(),
        "started": started,
        "comparisons": [],
        "bars": [],
        "coalescing": [],
        "soak": None,
        "cluster": {},
    }
    try:
        env = setup(fleet)
        report["config"] = {
            "rounds": env.rounds,
            "seconds": env.seconds,
            "soak_seconds": env.soak_seconds,
            "log_level": env.gateway_env["LOG_LEVEL"],
            "log_format": env.gateway_env["LOG_FORMAT"],
            "hit_variants": list(env.hit_variants),
            "server_core": env.server_core,
            "load_core": env.load_core,
        }
        print(settings_line(report["config"]), flush=True)
        bars: list[scenarios.Bar] = []
        comparisons = []
        cluster: cluster_scenarios.ClusterEnv | None = None
        for name in chosen:
            print(f"== {name}", flush=True)
            if name in cluster_scenarios.NAMES and cluster is None:
                cluster = cluster_scenarios.setup(env)  # started with the first of them
            if name == "cluster-hits" and cluster is not None:
                cmps, new = cluster_scenarios.hits(env, cluster)
            elif name == "cluster-coalescing" and cluster is not None:
                report["cluster"]["coalescing"], new = cluster_scenarios.coalescing(env, cluster)
                cmps = []
            elif name == "cluster-failover" and cluster is not None:
                report["cluster"]["failover"], new = cluster_scenarios.failover(env, cluster)
                cmps = []
            elif name == "hits":
                cmps, new = scenarios.chat_hits(env)
            elif name == "embeddings":
                cmps, new = scenarios.embedding_hits(env)
            elif name == "misses":
                cmps, new = scenarios.misses(env)
            elif name == "responses":
                cmps, new = scenario_responses.responses_hits(env)
            elif name == "coalescing":
                report["coalescing"], new = scenarios.coalescing(env)
                cmps = []
            elif name == "fallback":
                cmps, new = fallback.fallback(env)
            else:
                report["soak"], new = scenarios.soak(env)
                cmps = []
            comparisons += cmps
            bars += new
            for process in fleet.started:
                if not process.alive() and not process.name.startswith("cluster-node"):
                    raise RuntimeError(f"{process.name} died:\n{process.tail()}")
    except Exception as exc:
        print(f"bench could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        fleet.close()
    report["comparisons"] = [c.as_dict() for c in comparisons]
    report["bars"] = [b.as_dict() for b in bars]
    report["elapsed_s"] = round(time.time() - started, 1)
    report["load_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print_table(report, comparisons, bars)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / time.strftime("%Y%m%d-%H%M%S.json", time.gmtime(started))
    path.write_text(json.dumps(report, indent=2))
    print(f"raw results: {path.relative_to(ROOT)}")
    return 1 if any(b.ok is False for b in bars) else 0


if __name__ == "__main__":
    sys.exit(main())
