"""The learning agents' learners: concurrent calls, and recovery of a lost learner.

A phase (a rollout, a Train, an evaluation) calls every learner at once through
:meth:`Fleet.each`. When a call fails, :meth:`Fleet.recovering` finds out why: a locally
started learner that died is restarted; a remote one that stopped answering is waited for
(``learners.remote_wait``); one placed by Ray is waited for while Ray restarts its actor (it
may come back at another address). Each is re-Init-ed and given the parameters and optimizer
state of its last completed Train, and the phase runs again, so the run's numbers do not
change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from casi.v1 import net_pb2
from casi_proto.api import Params, Pending, Prediction
from casi_proto.errors import DEADLINE_EXCEEDED, FAILED_PRECONDITION, UNAVAILABLE, NetError

from casi_orchestrator.learners import Learner, LearnerPool

T = TypeVar("T")
RECOVERY_ATTEMPTS = 3
DEATH_WAIT = 3.0  # seconds to wait for a local learner's process to exit after a failed call


@dataclass
class Member:
    """One learning agent: its slot in the game, its learner, its last known parameters."""

    name: str
    slot: int
    index: int
    learner: Learner
    params: Params | None = None

    @property
    def net(self) -> Any:
        return self.learner.net


class Fleet:
    """Calls the members' learners concurrently and brings lost ones back.

    ``net_cfg`` gives a member's NetCfg (for the re-Init after a loss); ``on_recovered`` is
    told ``(event, member)`` with event ``learner_restarted`` or ``learner_reconnected``.
    """

    def __init__(
        self,
        pool: LearnerPool,
        members: list[Member],
        net_cfg: Callable[[Member], net_pb2.NetCfg],
        remote_wait: float,
        on_recovered: Callable[[str, Member], None] = lambda event, member: None,
    ) -> None:
        self.pool, self.members = pool, members
        self.net_cfg, self.remote_wait = net_cfg, remote_wait
        self.on_recovered = on_recovered
        self.executor = ThreadPoolExecutor(max_workers=max(1, len(members)))
        self._async: ThreadPoolExecutor | None = None  # for predict_async without the method
        self._failed: dict[str, NetError] = {}

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        if self._async is not None:
            self._async.shutdown(wait=True)

    @property
    def pipeline(self) -> int:
        """Parts of a pipelined rollout (``[learners] pipeline``; 1: not pipelined)."""
        return int(getattr(getattr(self.pool, "cfg", None), "pipeline", 1) or 1)

    def predict_async(self, member: Member, obs: np.ndarray) -> Pending:
        """``member``'s Predict on ``obs``, started; ``.result()`` waits for it.

        A learner with ``predict_async`` (the gRPC client: a request on its Act stream, or a
        unary call in flight) is asked directly; another one (in-process) computes in a pool
        thread, where torch runs without the GIL. A failure counts for recovery as in
        :meth:`each`.
        """
        start = getattr(member.net, "predict_async", None)
        try:
            if start is not None:
                return _Recorded(self, member, start(obs))
            if self._async is None:
                self._async = ThreadPoolExecutor(
                    max_workers=4 * max(1, len(self.members)), thread_name_prefix="casi-predict"
                )
            return _Recorded(self, member, self._async.submit(member.net.predict, obs))
        except NetError as exc:
            self._failed[member.name] = exc
            raise

    def each(self, fn: Callable[[Member], T], members: list[Member] | None = None) -> list[T]:
        """``fn`` on every member, concurrently; the first error is raised once all are done."""
        members = self.members if members is None else members

        def call(m: Member) -> T:
            try:
                return fn(m)
            except NetError as exc:
                self._failed[m.name] = exc
                raise

        if len(members) == 1:
            return [call(members[0])]
        futures = [self.executor.submit(call, m) for m in members]
        for err in [f.exception() for f in futures]:
            if err is not None:
                raise err
        return [f.result() for f in futures]

    def restore(self, member: Member, params: Params, optim: net_pb2.OptimCfg) -> None:
        """SetParams(``params``) and a fresh optimizer (a backtracking restart, pop or stop)."""

        def apply(m: Member) -> None:
            m.net.set_params(params)
            m.net.reset_optimizer(optim)
            m.params = m.net.get_params()

        self.recovering(lambda: self.each(apply, [member]))

    def recovering(self, phase: Callable[[], T]) -> T:
        """Runs ``phase``; if a learner was lost and is back, runs it again."""
        for attempt in range(RECOVERY_ATTEMPTS):
            self._failed = {}
            try:
                return phase()
            except NetError:
                if attempt == RECOVERY_ATTEMPTS - 1 or not self._recover():
                    raise
        raise AssertionError("unreachable")

    def _recover(self) -> bool:
        """Brings back the learners the failed phase lost; False if it lost none."""
        failed = dict(self._failed)
        local = any(m.learner.local for m in self.members if m.name in failed)
        dead = self._dead(wait=DEATH_WAIT if local else 0.0)
        lost = [m for m in self.members if m.name in failed and m.learner.remote]
        placed = [m for m in self.members if m.name in failed and m.learner.placed]
        for member in dead:
            self._revive(member)
        for member in lost:
            self._reconnect(member, failed[member.name])
        for member in placed:
            _check_gone(member, failed[member.name])
            self._revive(member)
        return bool(dead or lost or placed)

    def _dead(self, wait: float) -> list[Member]:
        """Locally started learners whose process exited (waiting up to ``wait`` s for one)."""
        local = [m for m in self.members if m.learner.local]
        deadline = time.monotonic() + wait
        while local:
            dead = [m for m in local if not m.learner.alive()]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.1)
        return []

    def _reconnect(self, member: Member, error: NetError) -> None:
        """Waits up to ``remote_wait`` s for a remote learner, then restores it.

        Only a learner that is gone (unreachable, or back without its model) is waited for;
        one that answers its health check but missed a deadline is hung: ``error`` is raised.
        """
        net, wait = member.net, self.remote_wait
        _check_gone(member, error)
        try:
            net.wait_ready(wait)
        except NetError:
            raise NetError(
                error.code,
                f"{error.message}; waited {wait:g} s (learners.remote_wait) for it to answer again",
            ) from None
        self._give_back(member)
        self.on_recovered("learner_reconnected", member)

    def _revive(self, member: Member) -> None:
        """Restarts a dead local learner and gives it back its last parameters.

        A replacement that dies too while it is given them is replaced again.
        """
        for attempt in range(RECOVERY_ATTEMPTS):
            member.learner = self.pool.restart(member.name)
            try:
                self._give_back(member)
                break
            except NetError:
                last = attempt == RECOVERY_ATTEMPTS - 1
                if last or (not member.learner.placed and not self._exited(member)):
                    raise
        self.on_recovered("learner_restarted", member)

    def _exited(self, member: Member) -> bool:
        """Whether a local learner's process exits within ``DEATH_WAIT`` s."""
        deadline = time.monotonic() + DEATH_WAIT
        while member.learner.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _give_back(self, member: Member) -> None:
        """Init, then the parameters and optimizer state of the last completed Train."""
        member.net.init(self.net_cfg(member))
        if member.params is not None:
            member.net.set_params(member.params)


class _Recorded:
    """A Predict in flight whose failure is recorded for :meth:`Fleet.recovering`."""

    def __init__(self, fleet: Fleet, member: Member, pending: Any) -> None:
        self.fleet, self.member, self.pending = fleet, member, pending

    def result(self) -> Prediction:
        try:
            return self.pending.result()  # type: ignore[no-any-return]
        except NetError as exc:
            self.fleet._failed[self.member.name] = exc
            raise


def _check_gone(member: Member, error: NetError) -> None:
    """Raises ``error`` unless it says the learner is gone (unreachable, or back without its
    model): one that answers its health check but missed a deadline is hung."""
    if error.code == DEADLINE_EXCEEDED:
        try:
            serving = member.net.health(timeout=1.0) == "SERVING"
        except NetError:
            serving = False
        if serving:
            raise error from None
    elif error.code not in (UNAVAILABLE, FAILED_PRECONDITION):
        raise error from None
