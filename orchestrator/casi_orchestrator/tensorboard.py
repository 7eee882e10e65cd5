"""TensorBoard event files of a trial, in ``trial-<k>/tb/`` (``[log] tensorboard``).

Every number of an iterations.csv row is a scalar, under CleanRL's tag names:
``charts/<agent>/win_rate``, ``charts/<agent>/episodic_return``, ``charts/<agent>/steps_to_win``,
``charts/<agent>/influence``, ``charts/<agent>/bonus``, ``losses/<agent>/<loss>`` (the fields of
Train's reply), ``charts/SPS`` (agent-steps per second of wall time, since the trial started)
and ``charts/iteration``. The ``comm/`` tags hold the communication of each evaluation, per episode:
``comm/<agent>/questions``, ``comm/<agent>/asked/<addressee>``,
``comm/<agent>/answers/<intention>`` and ``comm/<agent>/lies`` (specific plus general lies).
The x axis (``global_step``) is ``agent_steps``, as CleanRL's.

A resumed trial cuts the event files back to the checkpoint, as it cuts iterations.csv, and
then writes a new event file: no step is written twice. A fresh start removes old event files.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

from casi_proto.names import INTENTION_NAMES
from google.protobuf.message import DecodeError

from casi_orchestrator.config import RunConfig
from casi_orchestrator.evaluation import EvalResult
from casi_orchestrator.metrics import (
    AGENT_STEPS,
    BONUS,
    EVAL_METRICS,
    ITERATION,
    LOSS_METRICS,
    QUESTIONS,
    RETURN,
    WALL_TIME,
    answers_key,
    column,
)

FOLDER = "tb"
EVENT_FILES = "events.out.tfevents.*"
SPS = "charts/SPS"
ITERATION_TAG = "charts/iteration"
LIES = ("specific_lie", "general_lie")
FLUSH_SECS = 5
_CHART_NAMES = {RETURN: "episodic_return"}
_ANSWERS = {answers_key(n): n for n in INTENTION_NAMES}


def tag(agent: str, metric: str) -> str:
    """The tag of one agent's iterations.csv metric."""
    if metric in LOSS_METRICS:
        return f"losses/{agent}/{metric}"
    if metric == QUESTIONS:
        return f"comm/{agent}/questions"
    if metric in _ANSWERS:
        return f"comm/{agent}/answers/{_ANSWERS[metric]}"
    return f"charts/{agent}/{_CHART_NAMES.get(metric, metric)}"


def scalars(row: dict[str, Any], agents: list[str]) -> dict[str, float]:
    """The scalars of one iterations.csv row, by tag (empty cells have none)."""
    out: dict[str, float] = {}
    wall_time = row.get(WALL_TIME)
    if wall_time:
        out[SPS] = row[AGENT_STEPS] / wall_time
    for name in agents:
        for metric in (*EVAL_METRICS, *LOSS_METRICS, BONUS):
            value = row.get(column(name, metric))
            if value is not None:
                out[tag(name, metric)] = float(value)
        lies = [out.get(tag(name, answers_key(n))) for n in LIES]
        if None not in lies:
            out[f"comm/{name}/lies"] = sum(v for v in lies if v is not None)
    return out


def asked(result: EvalResult, names: list[str]) -> dict[str, float]:
    """Questions per episode by addressee: ``comm/<agent>/asked/<addressee>``."""
    out = {}
    for agent, per_slot in result.asked_to.items():
        for slot, value in enumerate(per_slot):
            if names[slot] != agent:
                out[f"comm/{agent}/asked/{names[slot]}"] = float(value)
    return out


class TrialBoard:
    """The event files of one trial; does nothing when ``[log] tensorboard`` is off."""

    def __init__(self, trial_folder: Path, cfg: RunConfig) -> None:
        self.folder = trial_folder / FOLDER
        self.enabled = cfg.log.tensorboard
        self.agents = [spec.name for _, spec in cfg.learning_agents]
        self.names = [spec.name for spec in cfg.agent_specs]
        self._writer: Any = None

    def open(self, resume_steps: int | None = None, replaced: bool = False) -> None:
        """Starts afresh, or (resumed at ``resume_steps``) keeps the events up to that step;
        before it if ``replaced`` (the trial writes that row again)."""
        if resume_steps is None:
            for path in self.folder.glob(EVENT_FILES):
                path.unlink()
        if not self.enabled:
            return
        tensorboardx = _tensorboardx()
        files = sorted(self.folder.glob(EVENT_FILES))
        if resume_steps is not None:
            keep = resume_steps - 1 if replaced else resume_steps
            for path in files:
                _cut(path, keep)
        # tensorboardX names files by the second: the count keeps a name from being reused
        # within one (and orders the files of that second)
        suffix = f".{len(files):04d}"
        self._writer = tensorboardx.FileWriter(
            str(self.folder), flush_secs=FLUSH_SECS, filename_suffix=suffix
        )

    def row(self, row: dict[str, Any], result: EvalResult | None = None) -> None:
        """The scalars of an iterations.csv row (and of its evaluation's questions)."""
        if self._writer is None:
            return
        values = scalars(row, self.agents)
        if result is not None:
            values.update(asked(result, self.names))
        values[ITERATION_TAG] = float(row[ITERATION])
        from tensorboardX.proto.summary_pb2 import Summary

        # one event per row with all its scalars: one event per scalar costs 20 times more
        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
        self._writer.add_summary(summary, int(row[AGENT_STEPS]))

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tensorboardx() -> Any:
    """tensorboardX, imported without torch.

    tensorboardX imports torch whenever it can (only to accept torch tensors); that takes
    seconds and the orchestrator has no use for it. A ``None`` in ``sys.modules`` makes
    ``import torch`` fail while tensorboardX loads; torch loaded already is left alone.
    """
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        import tensorboardX

        return tensorboardX
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


def _cut(path: Path, keep: int) -> None:
    """Rewrites an event file with only its events up to step ``keep`` (and no torn tail)."""
    from tensorboardX.proto.event_pb2 import Event

    data, kept, at = path.read_bytes(), [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            break
        try:
            event = Event.FromString(data[at + 12 : at + 12 + length])
        except DecodeError:
            break
        if event.step <= keep:
            kept.append(data[at:end])
        at = end
    path.write_bytes(b"".join(kept))
