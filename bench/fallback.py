"""Scenario 7 (issue #19): what a fallback adds to a miss, with two upstreams.

The second upstream answers 503 to every call; the gateway's models file sends model
`failing` there, with the healthy upstream's `gpt-4o-mini` as its fallback. At concurrency 1,
each request is a new body, so every one makes the failed call, then the fallback's miss.
The figure is the p50 of those requests over the healthy upstream's own p50 (asked
directly), next to the gateway's plain miss to the same upstream: the difference between
the two gateway rows is what the failed attempt and the second pass through the pipeline
cost.
"""

from __future__ import annotations

from bench import side, workload, wrk
from bench.procs import free_port
from bench.scenarios import Bar, Env

FAILING = "failing"


def fallback(env: Env) -> tuple[list[side.Comparison], list[Bar]]:
    fleet = env.fleet
    port, gw_port = free_port(), free_port()
    failing = fleet.start(
        "upstream-503",
        fleet.python("bench.fake_upstream", "--port", str(port), "--fail", "503"),
        port=port,
        core=env.load_core,
    )
    models = env.workdir / "models-fallback.toml"
    models.write_text(
        f'[models.{FAILING}]\nbase_url = "{failing.url}/v1"\n'
        f'fallbacks = ["{workload.CHAT_MODEL}"]\n'
    )
    gateway = fleet.start(
        "gateway-two-upstreams",
        fleet.python("bench.gateway_server", "--port", str(gw_port)),
        port=gw_port,
        core=env.server_core,
        env={**env.gateway_env, "MODELS_FILE": str(models)},
    )
    path = workload.CHAT_PATH
    direct = wrk.Load([], workload.chat_unique_template(), unique_every=1)
    falling = wrk.Load([], workload.chat_unique_template(FAILING), unique_every=1)
    try:
        cmp = env.compare(
            "7 fallback, concurrency 1",
            [
                side.Target("upstream", env.upstream, env.upstream.url + path, direct),
                side.Target("gateway", gateway, gateway.url + path, direct),
                side.Target("gateway-fallback", gateway, gateway.url + path, falling),
            ],
            connections=1,
        )
    finally:
        fleet.stop(gateway)
        fleet.stop(failing)
    p50 = cmp.median("gateway-fallback", "p50_ms")
    added = p50 - cmp.median("upstream", "p50_ms")
    attempt = p50 - cmp.median("gateway", "p50_ms")
    errors = cmp.errors("gateway-fallback") + cmp.errors("gateway")
    return [cmp], [
        Bar(
            "7 fallback",
            "added p50 ms at concurrency 1 (over the healthy upstream's direct p50)",
            added,
            "shown",
            None,
            f"a plain miss adds {added - attempt:.2f} ms; the failed attempt "
            f"{attempt:.2f} ms more; {errors} errors",
        )
    ]
