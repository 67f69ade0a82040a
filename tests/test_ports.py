"""`free_port`: the ports servers of tests and benchmarks start on cannot be taken meanwhile,
by the kernel (as a connection's source port), by this process or by another run."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bench.ports import BLOCK, FIRST, ephemeral_range, free_port

ROOT = Path(__file__).resolve().parent.parent


def test_ports_lie_outside_the_kernels_ephemeral_range_and_never_repeat() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(3 * BLOCK)]  # more than one block
    assert len(set(ports)) == len(ports)
    if high - low < 40_000:  # a range that leaves room outside it
        assert all(not low <= p <= high for p in ports)


def test_a_port_something_listens_on_is_skipped() -> None:
    port = free_port()
    while (port - FIRST) % BLOCK == BLOCK - 1:  # the next port must be of the same block
        port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))  # what would be handed out next
        taken.listen()
        assert free_port() != port + 1


def test_another_process_is_never_handed_this_ones_ports() -> None:
    mine = {free_port() for _ in range(BLOCK)}
    blocks = {p - (p - FIRST) % BLOCK for p in mine}  # the blocks this process holds
    code = "from bench.ports import free_port; print(*[free_port() for _ in range(200)])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    theirs = {int(p) for p in out.split()}
    assert len(theirs) == 200
    assert not {p - (p - FIRST) % BLOCK for p in theirs} & blocks
