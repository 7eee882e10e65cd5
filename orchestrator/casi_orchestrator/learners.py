"""Connecting the orchestrator to its learners.

Each learning agent gets a :class:`casi_proto.api.Net`:

- ``address = "HOST:PORT"`` (config or ``--learner NAME=HOST:PORT``): a gRPC client to a
  learner someone else runs;
- no address: a ``casi-learner`` subprocess started on a free loopback port, stopped at the end
  (SIGTERM, a grace period, then SIGKILL), also after an error or Ctrl-C;
- ``address = "inprocess"``: ``casi_learner.torch_net.TorchNet`` in this process (needs the
  ``casi-learner`` distribution, which brings torch);
- ``address = "ray"``, or no address with ``[learners] placement = "ray"``: a ``casi-learner``
  run by a Ray actor (:mod:`ray_learners`), reached at the address the actor reports.

Every learner is sent the bearer token held by the environment variable
``[learners] token_env`` (default ``CASI_TOKEN``) when it is set; a locally started learner is
given the same token. ``[learners] tls_ca`` (with ``tls_cert`` and ``tls_key`` for mutual TLS)
turns TLS on for the learners given by address; local ones listen on loopback in plaintext.

Locally started learners run in their own session, so a Ctrl-C in the terminal reaches only
the orchestrator, which finishes its iteration and checkpoints before stopping them. They are
given ``--parent-pid`` (this process): on Linux they ask for SIGTERM when the orchestrator dies,
and a watchdog thread in each stops it when the orchestrator is gone, should that be missed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from casi_proto.api import Net
from casi_proto.errors import UNAVAILABLE, NetError

from casi_orchestrator.config import DEFAULT_TOKEN_ENV, LearnersCfg

READY = re.compile(r"ready on (\S+)")
INPROCESS = "inprocess"
RAY = "ray"
STOP_GRACE = 10.0
RESTART_ATTEMPTS = 4  # starts tried when a local learner is replaced
RESTART_BACKOFF = 1.0  # s before the second start, doubled before each one after


class LearnerStartError(Exception):
    """A learner could not be started or reached; the message names the agent."""


@dataclass
class Learner:
    """One learning agent's Net and, if we started it, its process."""

    name: str
    net: Net
    address: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    actor: Any = None  # the Ray actor that runs it, if Ray placed it

    @property
    def placed(self) -> bool:
        """True for a learner placed by Ray."""
        return self.actor is not None

    @property
    def local(self) -> bool:
        """True if this orchestrator started the learner process."""
        return self.process is not None

    @property
    def remote(self) -> bool:
        """True for a learner given by address (someone else runs it)."""
        unknown = self.process is None and self.actor is None
        return unknown and self.address != INPROCESS and hasattr(self.net, "health")

    def alive(self) -> bool:
        """False once a locally started process has exited."""
        return self.process is None or self.process.poll() is None


def _read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The learner's first stdout line, or None if none came within ``timeout`` s."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(min(left, 0.5)):
                if left <= 0 or proc.poll() is not None:
                    return None
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def _tail(path: Path | None, n: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()[-n:]
    return "\n".join("    " + line for line in lines)


class LearnerPool:
    """Starts, connects and finally stops the learners of one run."""

    python = sys.executable  # the interpreter that runs ``-m casi_learner``

    def __init__(self, cfg: LearnersCfg, log_dir: Path) -> None:
        self.cfg = cfg
        self.log_dir = log_dir
        self.learners: dict[str, Learner] = {}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> LearnerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, name: str, address: str | None) -> Learner:
        """Connects (or starts) the learner of agent ``name``."""
        if address == INPROCESS:
            learner = Learner(name, _inprocess_net(name, self.cfg), INPROCESS)
        elif address == RAY or (not address and self.cfg.placement == RAY):
            learner = self._place(name)
        elif address:
            learner = Learner(name, self._connect(name, address), address)
        else:
            learner = self._start_local(name)
        self.learners[name] = learner
        return learner

    def add(self, name: str, net: Net, address: str = "custom") -> Learner:
        """Uses ``net`` (any object implementing Net) for agent ``name``."""
        learner = Learner(name, net, address)
        self.learners[name] = learner
        return learner

    def token(self) -> str | None:
        """The bearer token sent to the learners (from ``token_env``), or None."""
        token = os.environ.get(self.cfg.token_env) or None
        if token is None and self.cfg.token_env != DEFAULT_TOKEN_ENV:
            raise LearnerStartError(
                f"learners.token_env = {self.cfg.token_env!r}, but that environment variable "
                "is not set (or empty); export it with the learners' token"
            )
        return token

    def _connect(self, name: str, address: str, remote: bool = True) -> Net:
        from casi_proto.client import NetClient

        tls: dict[str, Any] = {}
        if remote and self.cfg.tls_ca is not None:
            tls = {
                "root_cert": self.cfg.tls_ca,
                "client_cert": self.cfg.tls_cert,
                "client_key": self.cfg.tls_key,
                "server_name": self.cfg.tls_server_name,
            }
        try:
            client = NetClient(
                address,
                name=name,
                timeout=self.cfg.rpc_timeout,
                train_timeout=self.cfg.train_timeout,
                max_message_mb=self.cfg.max_message_mb,
                token=self.token(),
                **tls,
            )
        except OSError as exc:
            raise LearnerStartError(
                f"learner of agent {name!r} at {address}: cannot read a TLS file ({exc})"
            ) from None
        if _refused_on_loopback(address):
            client.close()
            raise LearnerStartError(
                f"learner of agent {name!r} at {address}: nothing listens there (connection "
                "refused); start the learner first, or fix the address"
            )

        def slow(waited: float, last: str) -> None:
            print(
                f"casi: still waiting for the learner of agent {name!r} at {address} "
                f"({waited:.0f} s of learners.start_timeout = {self.cfg.start_timeout:g} s; "
                f"last answer: {last})",
                file=sys.stderr,
                flush=True,
            )

        try:
            client.wait_ready(self.cfg.start_timeout, on_slow=slow)
        except NetError as exc:
            client.close()
            if exc.code == "UNIMPLEMENTED":
                raise LearnerStartError(f"learner of agent {name!r}: {exc.message}") from None
            raise LearnerStartError(
                f"learner of agent {name!r} at {address} is not reachable after "
                f"{self.cfg.start_timeout:g} s: {exc.message}"
            ) from None
        return client

    def _start_local(self, name: str) -> Learner:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"learner-{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        cmd = [
            self.python, "-m", "casi_learner", "--port", "0", "--host", "127.0.0.1",
            *self._learner_args(), "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
        token = self.token()
        if token:  # the learner expects the token this pool sends
            env["CASI_TOKEN"] = token
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        line = _read_ready_line(proc, self.cfg.start_timeout)
        match = READY.search(line or "")
        if match is None:
            _stop(proc)
            why = f"printed {line!r}" if line else "printed no ready line"
            raise LearnerStartError(
                f"the local learner of agent {name!r} ({' '.join(cmd)}) {why} within "
                f"{self.cfg.start_timeout:g} s (exit status {proc.poll()}); its log "
                f"{log_path}:\n{_tail(log_path)}"
            )
        address = match.group(1)
        try:
            net = self._connect(name, address, remote=False)
        except LearnerStartError:
            _stop(proc)
            raise
        return Learner(name, net, address, proc, log_path)

    def _learner_args(self) -> list[str]:
        """The options of ``casi-learner`` this pool starts it with, but host, port, parent."""
        args = ["--policy", "torch", "--device", self.cfg.device]
        args += ["--max-message-mb", str(self.cfg.max_message_mb)]
        if self.cfg.threads:
            args += ["--threads", str(self.cfg.threads)]
        return args

    def _place(self, name: str) -> Learner:
        from casi_orchestrator import ray_learners

        actor = ray_learners.place(self.cfg, name, self._learner_args(), self.token())
        try:
            return self._reach(name, actor, self.cfg.start_timeout)
        except BaseException:
            ray_learners.stop(actor)
            raise

    def _reach(self, name: str, actor: Any, wait: float) -> Learner:
        """The learner a Ray actor runs, connected (waiting up to ``wait`` s for its address)."""
        from casi_orchestrator import ray_learners

        address = ray_learners.address_of(actor, name, self.cfg, wait)
        return Learner(name, self._connect(name, address, remote=False), address, actor=actor)

    def restart(self, name: str) -> Learner:
        """Replaces a dead locally started learner by a fresh process (not yet Init-ed).

        A replacement that dies during its start is tried again, up to RESTART_ATTEMPTS
        starts in all, RESTART_BACKOFF s apart and doubling; then LearnerStartError. For a
        learner placed by Ray: the one its actor runs once Ray restarted it (waited for up to
        ``start_timeout + remote_wait`` s).
        """
        old = self.learners[name]
        if old.placed:  # Ray restarts the actor; its new learner may listen elsewhere
            _close_net(old.net)
            wait = self.cfg.start_timeout + self.cfg.remote_wait
            self.learners[name] = new = self._reach(name, old.actor, wait)
            return new
        if not old.local:
            raise NetError(UNAVAILABLE, f"agent {name} at {old.address}: cannot restart it")
        _close_net(old.net)
        assert old.process is not None
        _stop(old.process)
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                new = self._start_local(name)
            except LearnerStartError as exc:
                if attempt == RESTART_ATTEMPTS:
                    raise LearnerStartError(
                        f"the local learner of agent {name!r} was lost and {attempt} starts "
                        f"of a replacement failed; the last one: {exc}"
                    ) from None
                pause = RESTART_BACKOFF * 2 ** (attempt - 1)
                first_line = str(exc).splitlines()[0]
                print(
                    f"casi: start {attempt} of {RESTART_ATTEMPTS} of a replacement learner for "
                    f"agent {name!r} failed ({first_line}); trying again in {pause:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(pause)
                continue
            self.learners[name] = new
            return new
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Closes every connection and stops every process this pool started."""
        for learner in self.learners.values():
            _close_net(learner.net)
        procs = [lr.process for lr in self.learners.values() if lr.process is not None]
        for proc in procs:
            _terminate(proc)
        for proc in procs:
            _stop(proc)
        actors = [lr.actor for lr in self.learners.values() if lr.actor is not None]
        if actors:
            from casi_orchestrator import ray_learners

            for actor in actors:
                ray_learners.stop(actor)
        for log in self._logs:
            log.close()
        self._logs.clear()
        self.learners.clear()


def _refused_on_loopback(address: str) -> bool:
    """True if ``address`` is on this host and refuses a TCP connection (nobody listens)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        number = int(port)
    except ValueError:
        return False
    if not loopback:
        return False
    try:
        socket.create_connection((host, number), timeout=2.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def _close_net(net: Net) -> None:
    close = getattr(net, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGCONT so that a stopped (SIGSTOP) learner can act on it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)


def _stop(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM (and SIGCONT), wait up to ``grace`` s, then SIGKILL."""
    if proc.poll() is None:
        _terminate(proc)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _inprocess_net(name: str, cfg: LearnersCfg) -> Net:
    try:
        from casi_learner.torch_net import TorchNet
    except ImportError as exc:
        raise LearnerStartError(
            f"agent {name!r} asks for an in-process learner, but casi_learner.torch_net "
            f"cannot be imported ({exc}); install it with `pip install -e ./learner` "
            f"(or casi-orchestrator[inprocess])"
        ) from None
    net: Net = TorchNet(device=cfg.device, threads=cfg.threads or None)
    return net
