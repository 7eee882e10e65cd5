"""Clients that call GetParams and never read the reply: the learner's memory stays bounded.

A stalled reader is a raw HTTP/2 connection that announces a flow-control window of 0 bytes,
sends its GetParams calls and never reads again, so the learner can send none of the reply.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError

from .conftest import LearnerProcess

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="/proc/PID/status"),
    pytest.mark.expensive,
]
HIDDEN = [2000, 2000]  # about 4.1 M parameters: a 16 MB GetParams reply
CONNECTIONS, STREAMS = 10, 4  # 40 stalled GetParams calls: 650 MB of replies if all are held
BUDGET_MB = 64
# A held reply costs the learner about 3x its size (the serialized message and grpc's copy of
# it, and the allocator keeps what building it took), so RSS may grow by a few budgets; 40
# stalled readers held 1.6 GB before the budget.
BOUND_MB = 4 * 64 + 120
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
INITIAL_WINDOW_SIZE = 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing (names and values under 127 bytes)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def stalled_reader(address: str, streams: int) -> socket.socket:
    """A connection with ``streams`` GetParams calls whose replies it will never read."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 0)))
    drain(sock)  # the server's SETTINGS (and a WINDOW_UPDATE), acknowledged below
    sock.sendall(frame(SETTINGS, ACK, 0))
    headers = b"".join(
        literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/casi.v1.Net/GetParams"),
            (":authority", address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    for stream in range(1, 2 * streams, 2):
        sock.sendall(frame(HEADERS, END_HEADERS, stream, headers))
        sock.sendall(frame(DATA, END_STREAM, stream, b"\x00\x00\x00\x00\x00"))  # an Empty
    return sock


def drain(sock: socket.socket, quiet: float = 0.3) -> None:
    sock.settimeout(quiet)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pass
    sock.settimeout(10)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) / 1024


def settle(pid: int, seconds: float = 6.0) -> float:
    """The highest RSS seen over ``seconds`` (the learner builds the replies one by one)."""
    high, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        high = max(high, rss_mb(pid))
        time.sleep(0.1)
    return high


@contextmanager
def big_learner(*args: str) -> Iterator[tuple[LearnerProcess, NetClient, list[socket.socket]]]:
    """A learner with a model of :data:`HIDDEN`, Init-ed through a client, and a list for the
    stalled connections, all closed at the end."""
    mb = str(BUDGET_MB)
    learner = LearnerProcess("--max-message-mb", mb, "--reply-budget-mb", mb, *args)
    cfg = NetContract().make_cfg()
    cfg.hidden_sizes[:] = HIDDEN
    sockets: list[socket.socket] = []
    try:
        with NetClient(learner.address, name="a0", max_message_mb=BUDGET_MB) as client:
            client.wait_ready(60.0)
            client.init(cfg)
            yield learner, client, sockets
    finally:
        for sock in sockets:
            sock.close()
        learner.kill()


def test_stalled_getparams_readers_hold_bounded_memory() -> None:
    with big_learner() as (learner, client, sockets):
        client.get_params()
        before = settle(learner.pid, 1.0)
        sockets += [stalled_reader(learner.address, STREAMS) for _ in range(CONNECTIONS)]
        held = settle(learner.pid) - before
        print(f"RSS {before:.0f} MB, +{held:.0f} MB with {len(sockets) * STREAMS} stalled")
        assert held < BOUND_MB, f"{held:.0f} MB held for stalled readers"

        started = time.monotonic()
        logits, _ = client.predict(np.zeros((2, NetContract().make_cfg().obs_dim), np.float32))
        assert logits.shape[0] == 2
        with pytest.raises(NetError) as info:
            client.get_params()
        assert time.monotonic() - started < 10.0
        assert info.value.code == "RESOURCE_EXHAUSTED", info.value.message
        assert "--reply-budget-mb" in info.value.message
        assert "raise max_message_mb" not in info.value.message

        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + 30.0
        while True:  # the budget comes back once the stalled connections are gone
            try:
                client.get_params()
                break
            except NetError as exc:
                if exc.code != "RESOURCE_EXHAUSTED" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the other end closes ``sock`` within ``within`` s (what it sent is read away)."""
    deadline = time.monotonic() + within
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_a_stalled_reader_that_does_not_answer_keepalive_pings_is_evicted() -> None:
    """The stalled connections are never closed by their client: the learner closes them."""
    pings = ("--keepalive-s", "1", "--keepalive-timeout-s", "1")
    with big_learner(*pings) as (learner, client, sockets):
        sockets += [stalled_reader(learner.address, STREAMS) for _ in range(2)]
        started = time.monotonic()
        assert all(closed_by_peer(sock, within=30.0) for sock in sockets)
        print(f"evicted after {time.monotonic() - started:.1f} s")
        client.get_params()  # their replies are freed: a whole budget's worth is sent
