"""Ray for CASI: connecting to it, and learners placed by it (``[learners] placement = "ray"``).

Imported only when a run asks for Ray (``casi run --ray``, ``placement = "ray"``, an agent's
``address = "ray"``); ``casi run`` without them never imports Ray.

A learner placed by Ray is a :class:`LearnerActor`: a Ray actor that asks for
``learners.num_cpus``, ``num_gpus`` and ``resources``, and starts the same ``casi-learner``
command a local learner runs, bound to the address of the actor's node (127.0.0.1 on a local
Ray). The orchestrator asks the actor for that address and talks to the learner over gRPC,
as to any learner; the proto stays the only interface. When the learner or the actor dies, the
actor dies with it (the learner is started with ``--parent-pid``; the actor watches the
learner) and Ray starts both again, up to ``learners.max_restarts`` times; the run's recovery
(:mod:`fleet`) then re-Inits the new learner, at the address the actor reports, with its last
parameters.

Loopback: on Linux, Ray replaces a node address of 127.0.0.1 by the machine's network
address and its servers then listen on it. The local Ray this module starts turns that off
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the switch Ray reads for single-machine use), so
that every Ray process it starts listens on 127.0.0.1 only. A cluster given by address is
used as it is: securing it is its owner's business (README, "Scaling out with Ray").
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.learners import READY, LearnerStartError, _read_ready_line, _stop

LOOPBACK = "127.0.0.1"
AUTO = "auto"
CLUSTERS_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
STOP_WAIT = 15.0  # s for a learner actor to stop its learner before it is killed
RETRY_PAUSE = 0.5
ACTOR_PREFIX = "casi-learner-"
START_TRIES = 3
NODE_TIMEOUT = "timed out during startup"  # Ray's words when its node misses its 30 s


def connect(address: str = AUTO, num_cpus: int | None = None) -> None:
    """Connects this process to Ray, once: ``auto`` joins the cluster this machine belongs to
    (``RAY_ADDRESS``, or one started by ``ray start``), else starts a local Ray on 127.0.0.1
    with ``num_cpus`` (default: every core); ``HOST:PORT`` joins the cluster there."""
    if _initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each trial's progress lines, not one of them
    if not sys.stderr.isatty():  # ... and as plain text where stderr is no terminal
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if address == AUTO and not _cluster_known():
        start_local(num_cpus)
        return
    import ray

    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise LearnerStartError(
            f"--ray {address}: cannot join the Ray cluster ({_first_line(exc)}); start it with "
            "`ray start --head --node-ip-address HOST`, or use --ray auto for a local Ray"
        ) from None


def loopback_only() -> None:
    """Makes the Ray nodes this process starts from now on use 127.0.0.1 (not the machine's
    network address) for every address they listen on and announce."""
    os.environ[CLUSTERS_SWITCH] = "0"  # read by Ray's processes when they start
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # ... and by this one, if Ray was imported already


def start_local(num_cpus: int | None = None) -> None:
    """Starts a Ray on this machine whose processes all listen on 127.0.0.1 only.

    Ray gives its node 30 s to come up; on a loaded machine its raylet now and then misses
    that (once in some 80 starts here), and a second start succeeds. So a start that timed
    out is tried again, up to ``START_TRIES`` times in all. (The failed start's GCS stays
    until this process ends: Ray keeps no handle on it.)"""
    loopback_only()
    import ray

    for attempt in range(1, START_TRIES + 1):
        try:
            ray.init(
                address="local",
                _node_ip_address=LOOPBACK,
                include_dashboard=False,
                num_cpus=num_cpus or os.cpu_count() or 1,
                log_to_driver=True,
            )
            return
        except Exception as exc:
            if NODE_TIMEOUT not in str(exc):
                raise
            ray.shutdown()
            if attempt == START_TRIES:
                raise LearnerStartError(
                    f"--ray auto: the local Ray did not start in {START_TRIES} tries "
                    f"({_first_line(exc)}); see the raylet's log under "
                    f"{Path(tempfile.gettempdir()) / 'ray' / 'session_latest' / 'logs'}"
                ) from None


def _initialized() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return bool(ray.is_initialized())


def _cluster_known() -> bool:
    """True if ``ray.init(address="auto")`` would find a cluster to join."""
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return bool(os.environ.get("RAY_ADDRESS")) or current.exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LearnerActor:
    """One ``casi-learner`` on the actor's node; the actor dies when its learner dies."""

    def __init__(self, argv: list[str], token: str | None, start_timeout: float) -> None:
        import ray

        host = ray.util.get_node_ip_address()
        cmd = [
            sys.executable, "-m", "casi_learner", "--port", "0", "--host", host, *argv,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
        if token:
            env["CASI_TOKEN"] = token
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        line = _read_ready_line(self.proc, start_timeout)
        match = READY.search(line or "")
        if match is None:
            _stop(self.proc)
            raise RuntimeError(
                f"{' '.join(cmd)} printed {line!r} instead of its ready line within "
                f"{start_timeout:g} s (exit status {self.proc.poll()}); its stderr is in this "
                "actor's Ray log"
            )
        self._address = match.group(1)
        self._stopping = False
        threading.Thread(target=self._watch, name="casi-learner-watch", daemon=True).start()

    def _watch(self) -> None:
        self.proc.wait()
        if not self._stopping:
            os._exit(1)  # Ray restarts the actor, and with it the learner

    def address(self) -> str:
        """``HOST:PORT`` of the learner (never that of a learner that has died)."""
        if self.proc.poll() is not None and not self._stopping:
            os._exit(1)
        return self._address

    def learner_pid(self) -> int:
        return self.proc.pid

    def node_id(self) -> str:
        """The Ray node the actor (and its learner) runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def stop(self) -> None:
        """SIGTERM to the learner, a grace period, then SIGKILL."""
        self._stopping = True
        _stop(self.proc)


def place(cfg: LearnersCfg, agent: str, argv: list[str], token: str | None) -> Any:
    """A new learner actor for ``agent`` with the resources of ``cfg`` (its learner is
    starting), named ``casi-learner-<agent>-<8 hex digits>`` (``ray list actors`` shows it).
    Joins Ray first if this process has not (``connect("auto")``)."""
    connect(AUTO)
    import ray

    options: dict[str, Any] = {
        "name": f"{ACTOR_PREFIX}{agent}-{uuid.uuid4().hex[:8]}",
        "num_cpus": cfg.num_cpus,
        "num_gpus": cfg.num_gpus,
        "resources": dict(cfg.resources),
        "max_restarts": cfg.max_restarts,
        "max_task_retries": -1,  # address() asked while it restarts waits for the new learner
    }
    return ray.remote(LearnerActor).options(**options).remote(argv, token, cfg.start_timeout)


def address_of(actor: Any, name: str, cfg: LearnersCfg, wait: float) -> str:
    """The address of the learner ``actor`` runs, waiting up to ``wait`` s for it (while Ray
    places the actor or restarts it)."""
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + wait
    while True:
        try:
            return str(
                ray.get(actor.address.remote(), timeout=max(deadline - time.monotonic(), 0.1))
            )
        except GetTimeoutError:
            raise LearnerStartError(
                f"the learner of agent {name!r} (a Ray actor) reported no address within "
                f"{wait:g} s: no node of the Ray cluster offers num_cpus = {cfg.num_cpus:g}, "
                f"num_gpus = {cfg.num_gpus:g}, resources = {dict(cfg.resources)} (learners.*) "
                "that is free, or the learner is slow to start (learners.start_timeout)"
            ) from None
        except ActorDiedError as exc:
            raise LearnerStartError(
                f"the learner of agent {name!r} (a Ray actor) is dead for good "
                f"(learners.max_restarts = {cfg.max_restarts}): {_first_line(exc)}"
            ) from None
        except RayActorError as exc:  # unavailable for a moment (restarting)
            if time.monotonic() >= deadline:
                raise LearnerStartError(
                    f"the learner of agent {name!r} (a Ray actor) did not come back within "
                    f"{wait:g} s: {_first_line(exc)}"
                ) from None
            time.sleep(RETRY_PAUSE)


def stop(actor: Any) -> None:
    """Stops the learner of ``actor``, then the actor (no restart)."""
    import ray

    with contextlib.suppress(Exception):
        ray.get(actor.stop.remote(), timeout=STOP_WAIT)
    with contextlib.suppress(Exception):
        ray.kill(actor, no_restart=True)
