"""``casi-learner``: serve one Net (the torch model or a scripted policy) over gRPC.

Prints exactly one line on stdout once bound:
``casi-learner ready on HOST:PORT policy=NAME device=DEV``. Everything else goes
to stderr. SIGTERM/SIGINT: health NOT_SERVING, the call in flight finishes, exit 0.
The signal handler only writes a byte to a pipe (it takes no lock, so a second signal
arriving inside it cannot deadlock); signals that come after the first are ignored.

``--parent-pid PID`` (what the orchestrator passes to the learners it starts): the learner
stops when process PID is gone. On Linux it asks for SIGTERM when its parent dies
(PR_SET_PDEATHSIG) and a watchdog thread waits on the parent as well, in case that signal
is missed; either, and any number of repeats, ends in the same shutdown.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import os
import select
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

from casi_proto.api import Net

from casi_learner import __version__
from casi_learner.scripted import POLICIES
from casi_learner.server import (
    KEEPALIVE_MS,
    KEEPALIVE_TIMEOUT_MS,
    build_server,
    host_port,
    shutdown,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casi-learner", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--policy", default="torch", choices=("torch", *POLICIES))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--token",
        default=None,
        help="bearer token every Net call must carry "
        "(default: the CASI_TOKEN environment variable)",
    )
    p.add_argument("--tls-cert", default=None, help="PEM server certificate (TLS)")
    p.add_argument("--tls-key", default=None, help="PEM key of --tls-cert")
    p.add_argument(
        "--tls-client-ca",
        default=None,
        help="PEM CA that client certificates must chain to (mutual TLS)",
    )
    p.add_argument("--max-message-mb", type=int, default=256, help="gRPC message size limit")
    p.add_argument(
        "--max-params",
        type=int,
        default=None,
        help="largest model Init accepts, in parameters (default: what fits a GetParams reply "
        "of --max-message-mb, MB x 2**20 / 16)",
    )
    p.add_argument(
        "--reply-budget-mb",
        type=int,
        default=None,
        help="MB of replies held for clients that have not read them yet; a reply past it "
        "is refused with RESOURCE_EXHAUSTED (default: twice --max-message-mb)",
    )
    p.add_argument(
        "--keepalive-s",
        type=float,
        default=KEEPALIVE_MS / 1000,
        help="seconds between the learner's keepalive pings on each connection (default 60)",
    )
    p.add_argument(
        "--keepalive-timeout-s",
        type=float,
        default=KEEPALIVE_TIMEOUT_MS / 1000,
        help="a connection that does not answer a ping within this is closed and its unread "
        "replies freed (default 20)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds a call in flight may take to finish at shutdown",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="stop when the process with this id is gone (the orchestrator passes its own)",
    )
    p.add_argument("--version", action="version", version=f"casi-learner {__version__}")
    args = p.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        p.error("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    for flag in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            p.error(f"--{flag.replace('_', '-')} {path}: no such file")
    _check_limits(p, args)
    if args.token is None:
        args.token = os.environ.get("CASI_TOKEN")
        source = "the environment variable CASI_TOKEN"
    else:
        source = "--token"
    if args.token == "":
        p.error(
            f"{source} is an empty token, which would let everyone in: give a non-empty "
            "token, or leave it out to serve without one"
        )
    return args


def _check_limits(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.max_message_mb < 1:
        p.error(f"--max-message-mb must be >= 1, got {args.max_message_mb}")
    if args.reply_budget_mb is not None and args.reply_budget_mb < args.max_message_mb:
        p.error(
            f"--reply-budget-mb ({args.reply_budget_mb}) must be >= --max-message-mb "
            f"({args.max_message_mb}): one reply of the message limit must fit"
        )
    for flag in ("keepalive_s", "keepalive_timeout_s"):
        if not 0.001 <= getattr(args, flag) <= 86400:
            p.error(
                f"--{flag.replace('_', '-')} must be in [0.001, 86400], got {getattr(args, flag)}"
            )
    if args.max_params is not None and args.max_params < 1:
        p.error(f"--max-params must be >= 1, got {args.max_params}")


def make_net(args: argparse.Namespace) -> tuple[Net, str]:
    """The Net to serve and its device name; torch is imported only for ``--policy torch``."""
    if args.policy != "torch":
        from casi_learner.scripted import ScriptedNet

        return ScriptedNet(args.policy), "cpu"
    from casi_learner.device import resolve_device
    from casi_learner.torch_net import TorchNet, params_limit

    device = resolve_device(args.device)
    max_params = args.max_params or params_limit(args.max_message_mb)
    return TorchNet(device, args.threads, max_params), device


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        print(f"casi-learner: parent process {args.parent_pid} is gone", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s casi-learner %(levelname)s %(message)s",
    )
    if not args.token and not is_loopback(args.host):
        print(
            f"casi-learner: warning: binding {args.host} without --token (or CASI_TOKEN): "
            f"anyone who can reach port {args.port or '(chosen)'} can drive this learner and "
            "read its parameters",
            file=sys.stderr,
            flush=True,
        )
    try:
        net, device = make_net(args)
    except ValueError as exc:  # e.g. --device cuda on a host without CUDA
        print(f"casi-learner: {exc}", file=sys.stderr)
        return 2
    try:
        server, port, health = build_server(
            net,
            args.host,
            args.port,
            token=args.token,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            max_message_mb=args.max_message_mb,
            reply_budget_mb=args.reply_budget_mb,
            keepalive_ms=round(args.keepalive_s * 1000),
            keepalive_timeout_ms=round(args.keepalive_timeout_s * 1000),
        )
    except OSError as exc:
        print(f"casi-learner: {exc}", file=sys.stderr)
        return 1
    wake = stop_pipe()
    if args.parent_pid is not None:
        watch_parent(args.parent_pid, wake[1])
    address = host_port(args.host, port)
    print(f"casi-learner ready on {address} policy={args.policy} device={device}", flush=True)
    grace = args.grace
    if wait_for_stop(wake) == PARENT_GONE:
        logging.info("parent process %d is gone", args.parent_pid)
        grace = min(grace, PARENT_GONE_GRACE)  # nobody is left to read the replies
    logging.info("shutting down: health NOT_SERVING, letting calls in flight finish")
    shutdown(server, health, grace)
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """Exits without the interpreter's teardown, which takes seconds once torch is loaded
    (the orchestrator waits DEATH_WAIT = 3 s for a learner it saw fail): nothing is left to
    do once the server has stopped and no call runs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


PARENT_GONE = b"p"
PARENT_GONE_GRACE = 2.0  # s for calls in flight once the parent is gone
PR_SET_PDEATHSIG = 1


def die_with_parent(pid: int) -> bool:
    """Asks for SIGTERM when parent ``pid`` dies (Linux); False if it is gone already."""
    if sys.platform == "linux" and os.getppid() == pid:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # the watchdog thread still notices
    return parent_alive(pid, os.getppid())


def parent_alive(pid: int, first_ppid: int) -> bool:
    if first_ppid == pid:  # it was our parent: it is gone once we have been re-parented
        return os.getppid() == pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def watch_parent(pid: int, wake: int) -> threading.Thread:
    """A daemon thread that writes PARENT_GONE to ``wake`` once process ``pid`` is gone."""
    first_ppid = os.getppid()

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None  # no pidfd (old kernel, not Linux): poll
        if fd is not None and parent_alive(pid, first_ppid):
            select.select([fd], [], [])
        else:
            while parent_alive(pid, first_ppid):
                time.sleep(0.5)
        try:
            os.write(wake, PARENT_GONE)
        except OSError:
            pass

    thread = threading.Thread(target=watch, name="casi-parent-watchdog", daemon=True)
    thread.start()
    return thread


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_pipe() -> tuple[int, int]:
    """A pipe ``(read, write)`` that SIGTERM and SIGINT write a byte to."""
    read, write = os.pipe()
    os.set_blocking(write, False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        try:  # nothing here may take a lock: another signal can interrupt this function
            os.write(write, b"s")
        except OSError:
            pass  # the pipe is full: the main thread is already woken

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    return read, write


def wait_for_stop(pipe: tuple[int, int]) -> bytes:
    """Blocks until something writes to ``pipe``; from then on stop signals are ignored."""
    reason = b""
    while not reason:
        reason = os.read(pipe[0], 1)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return reason
