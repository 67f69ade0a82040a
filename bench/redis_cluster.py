"""A loopback Redis Cluster for the benchmark: 3 primaries + 3 replicas, pinned to the load core.

Started through the run's `Fleet` (so it always stops), joined with `redis-cli --cluster
create`, and ready once every node says `cluster_state:ok` and every replica is in sync.
A short `cluster-node-timeout` makes a killed primary fail over in a few seconds, as the
failover scenario needs; `cluster-require-full-coverage no` keeps the healthy shards serving
meanwhile (what `docs/cluster.md` recommends for a cache).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

from bench.procs import Fleet, Process, free_port

NODE_TIMEOUT_MS = 1000


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    return done.stdout


@dataclass
class Cluster:
    nodes: dict[int, Process]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{next(iter(self.nodes))}/0"

    def primaries(self) -> list[int]:
        out = []
        for port in self.nodes:
            text = _cli(port, "CLUSTER", "NODES")
            if not text:
                continue
            for line in text.splitlines():
                fields = line.split()
                flags = fields[2].split(",")
                if "master" in flags and "fail" not in flags and len(fields) > 8:
                    out.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
            return sorted(out)
        return out

    def healthy(self) -> bool:
        if not all("cluster_state:ok" in _cli(p, "CLUSTER", "INFO") for p in self.nodes):
            return False
        primaries = self.primaries()
        replicas = [p for p in self.nodes if p not in primaries]
        return len(primaries) == 3 and all(
            "master_link_status:up" in _cli(p, "INFO", "replication") for p in replicas
        )

    def wait(self, what: str, check: object, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster: {what} not within {within:g} s")
            time.sleep(0.05)

    def sync(self) -> None:
        for port in self.primaries():
            _cli(port, "WAIT", "1", "2000")


def start_cluster(fleet: Fleet, core: str | None, name: str = "cluster") -> Cluster:
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        raise RuntimeError("redis-server and redis-cli are needed (apt-get install redis-tools)")
    nodes: dict[int, Process] = {}
    for i in range(6):
        port = free_port()
        workdir = fleet.workdir / f"{name}-{port}"
        workdir.mkdir()
        argv = [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)),
            *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-port", str(free_port())),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0"),
            *("--cluster-require-full-coverage", "no"),
        ]
        nodes[port] = fleet.start(f"{name}-node-{i}", argv, port=port, core=core)
    subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in nodes),
            *("--cluster-replicas", "1", "--cluster-yes"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    cluster = Cluster(nodes)
    cluster.wait("every node ok and every replica in sync", cluster.healthy)
    return cluster
