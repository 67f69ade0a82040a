"""Throwaway Redis topologies the tests own: a 3-primary + 3-replica cluster, and one primary,
one replica and three sentinels. Every process is started by the tests on free loopback ports,
with short failure-detection times so a failover takes seconds, and stopped by pid.

    cluster = RedisClusterServers(tmp_path).start()   # redis-cli --cluster create, all synced
    cluster.kill(cluster.primary_of("some-key"))        # SIGKILL; a replica takes over
    cluster.wait_promoted(old_port)                     # until it has
    cluster.stop()

Under CI=true a missing `redis-server` or `redis-cli` fails the test instead of skipping it
(`require_binaries`).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_server import RedisServer, free_port, require_redis

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a dead primary is failed over in ~2-3 s
DOWN_AFTER_MS = 600  # sentinel down-after-milliseconds
FAILOVER_TIMEOUT_MS = 3000


def require_binaries() -> None:
    """Skip (fail under CI=true) when `redis-server` or `redis-cli` is missing."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        require_redis()


def cli(port: int, *args: str, timeout: float = 5.0) -> str:
    """`redis-cli -p port args...`, its output as text ('' when the server is gone)."""
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout.strip()


def _replication(port: int) -> dict[str, str]:
    out = cli(port, "INFO", "replication")
    return dict(
        line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#")
    )


def _wait(predicate: object, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {within:g} s")


class RedisClusterServers:
    """Six `redis-server --cluster-enabled yes` processes made into 3 primaries + 3 replicas."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> None:
        self.workdir = workdir
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.servers: dict[int, RedisServer] = {}
        self.stopped: dict[int, RedisServer] = {}

    def _server(self, port: int, bus: int) -> RedisServer:
        node_dir = self.workdir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        extra = [
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            # The bus port defaults to port + 10000, past 65535 for a high free port.
            *("--cluster-port", str(bus)),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            # Fail over whatever the replica's lag, and sync replicas at once (the default
            # waits 5 s before a diskless sync: a primary killed sooner has no replica).
            *("--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0"),
            # What docs/cluster.md recommends for a cache: the healthy shards keep serving
            # while a failed one's slots are uncovered (the default refuses every command).
            *("--cluster-require-full-coverage", "no"),
            *("--enable-debug-command", "local"),  # DEBUG SLEEP: a hung node
        ]
        if self.password:
            extra += ["--masterauth", self.password]
        return RedisServer(node_dir, port=port, password=self.password, extra_args=extra)

    def start(self, ports: list[int] | None = None) -> RedisClusterServers:
        """Start and join the six nodes; a port taken meanwhile by a process that does not
        pick its ports with `bench.ports` is one retry on fresh ports."""
        require_binaries()
        for attempt in range(3):
            chosen = ports or _distinct_ports(12)
            try:
                return self._start(chosen[:6], chosen[6:] if len(chosen) == 12 else None)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                self.stop()
                if ports is not None or attempt == 2:
                    raise RuntimeError(f"the cluster did not form: {_output(exc)}") from exc
        raise AssertionError("unreachable")

    def _start(self, ports: list[int], buses: list[int] | None) -> RedisClusterServers:
        for i, port in enumerate(ports):
            bus = buses[i] if buses is not None else free_port()
            self.servers[port] = self._server(port, bus).start()
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        subprocess.run(
            [
                "redis-cli",
                *auth,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        _wait(self._healthy, "cluster ok with every replica in sync", 30)
        return self

    def _cli(self, port: int, *args: str) -> str:
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return cli(port, *auth, *args)

    def _healthy(self) -> bool:
        for port in self.servers:
            if "cluster_state:ok" not in self._cli(port, "CLUSTER", "INFO"):
                return False
        replicas = [p for p in self.servers if p not in self.primaries()]
        return len(replicas) == 3 and all(
            "master_link_status:up" in self._cli(p, "INFO", "replication") for p in replicas
        )

    @property
    def url(self) -> str:
        """Any one node (the gateway discovers the others)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{next(iter(self.servers))}/0"

    @property
    def ports(self) -> list[int]:
        return list(self.servers)

    def _nodes(self) -> list[list[str]]:
        for port in self.servers:
            out = self._cli(port, "CLUSTER", "NODES")
            if out:
                return [line.split() for line in out.splitlines() if line.strip()]
        raise RuntimeError("no node of the cluster answers")

    def primaries(self) -> list[int]:
        """Ports of the primaries serving slots, not flagged failed."""
        out = []
        for fields in self._nodes():
            flags = fields[2].split(",")
            if "master" in flags and "fail" not in flags and len(fields) > 8:
                out.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(out)

    def primary_of(self, key: str) -> int:
        """The port of the primary serving `key`'s slot."""
        slot = int(self._cli(next(iter(self.servers)), "CLUSTER", "KEYSLOT", key))
        for fields in self._nodes():
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            for span in fields[8:]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no primary serves slot {slot}")

    def sync(self) -> None:
        """Wait until every primary's replica has all its writes (`WAIT 1`)."""
        for port in self.primaries():
            self._cli(port, "WAIT", "1", "2000")

    def kill(self, port: int) -> None:
        """SIGKILL the node: no goodbye, as a crashed host."""
        server = self.servers.pop(port)
        server.stop()
        self.stopped[port] = server

    def wait_promoted(self, dead: int, within: float = 20.0) -> int:
        """Until a replica of the dead primary `dead` serves its slots; its port."""

        def promoted() -> bool:
            primaries = self.primaries()
            return dead not in primaries and len(primaries) == 3

        _wait(promoted, f"a replica promoted in place of {dead}", within)
        _wait(lambda: all("cluster_state:ok" in self._cli(p, "CLUSTER", "INFO")
                          for p in self.servers), "cluster ok again", within)  # fmt: skip
        return next(p for p in self.primaries() if p not in self.stopped)

    def hang(self, port: int, seconds: float) -> subprocess.Popen[bytes]:
        """`DEBUG SLEEP seconds` on the node: it accepts connections and answers nothing."""
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return subprocess.Popen(
            ["redis-cli", "-p", str(port), *auth, "DEBUG", "SLEEP", str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def connections_received(self, port: int) -> int:
        out = self._cli(port, "INFO", "stats")
        for line in out.splitlines():
            if line.startswith("total_connections_received:"):
                return int(line.split(":")[1])
        raise RuntimeError(f"node {port} did not answer INFO")

    def stop(self) -> None:
        for server in [*self.servers.values(), *self.stopped.values()]:
            server.stop()
        self.servers.clear()
        self.stopped.clear()


class SentinelSet:
    """One primary, one replica, three sentinels watching them as `master`."""

    master = "mymaster"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.primary: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []

    def start(self, *, failover: bool = True) -> SentinelSet:
        """Start it all; until the sentinels see the replica, and, with `failover`, each other
        too (a quorum can then fail the primary over). They find each other by hellos sent
        every 2 s: a set that is never failed over need not wait for them."""
        require_binaries()
        primary_dir, replica_dir = self.workdir / "primary", self.workdir / "replica"
        primary_dir.mkdir(parents=True, exist_ok=True)
        replica_dir.mkdir(parents=True, exist_ok=True)
        self.primary = RedisServer(
            primary_dir, extra_args=["--repl-diskless-sync-delay", "0"]
        ).start()
        self.replica = RedisServer(
            replica_dir,
            extra_args=[
                *("--replicaof", "127.0.0.1", str(self.primary.port)),
                *("--repl-diskless-sync-delay", "0"),
            ],
        ).start()
        _wait(
            lambda: _replication(self.replica_port).get("master_link_status") == "up",
            "replica in sync",
            15,
        )
        for i in range(3):
            port = free_port()
            conf = self.workdir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {self.master} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.master} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.master} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [str(shutil.which("redis-server")), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.sentinel_ports.append(port)
        for port in self.sentinel_ports:
            _wait(lambda p=port: _listening(p), f"sentinel on {port}", 10)  # type: ignore[misc]
        _wait(
            lambda: self._sentinels_agree(others=2 if failover else None),
            "sentinels see the replica" + (" and each other" if failover else ""),
            20,
        )
        return self

    @property
    def primary_port(self) -> int:
        assert self.primary is not None
        return self.primary.port

    @property
    def replica_port(self) -> int:
        assert self.replica is not None
        return self.replica.port

    @property
    def sentinels_setting(self) -> str:
        """The `REDIS_SENTINELS` value."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _sentinels_agree(self, *, others: int | None) -> bool:
        for port in self.sentinel_ports:
            info = cli(port, "SENTINEL", "MASTER", self.master)
            fields = info.splitlines()
            state = dict(zip(fields[0::2], fields[1::2], strict=False))
            if state.get("num-slaves") != "1":
                return False
            if others is not None and state.get("num-other-sentinels") != str(others):
                return False
        return True

    def master_port(self) -> int:
        """The primary's port as the sentinels name it now."""
        out = cli(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        return int(out.splitlines()[1])

    def kill_primary(self) -> int:
        """SIGKILL the primary; its port."""
        assert self.primary is not None
        port = self.primary.port
        self.primary.stop()
        return port

    def wait_failover(self, old: int, within: float = 20.0) -> int:
        """Until the sentinels name another primary and it accepts writes; its port."""
        _wait(lambda: self.master_port() != old, "sentinels promote the replica", within)
        new = self.master_port()
        _wait(lambda: _replication(new).get("role") == "master", "replica became primary", 10)
        return new

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        self.sentinels.clear()
        for server in (self.primary, self.replica):
            if server is not None:
                server.stop()


def _distinct_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]  # never the same port twice


def _output(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        out = (exc.stdout or b"") + (exc.stderr or b"")
        return out.decode(errors="replace")[-2000:] if isinstance(out, bytes) else str(out)
    return str(exc)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
