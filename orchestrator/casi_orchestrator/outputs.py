"""What a trial writes: ``config.toml``, ``iterations.csv`` and ``events.jsonl``.

Both line files are flushed after every iteration; a checkpoint records how many lines they
held, and a resumed run first cuts them back to that many. :func:`trial_status` tells what an
existing trial folder holds (for ``casi run``'s refusal to write over it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import IO, Any, NamedTuple

import tomli_w

from casi_orchestrator.checkpoint import MAX_META_BYTES, META, find_checkpoint
from casi_orchestrator.metrics import csv_columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _clean(value: Any) -> Any:
    """JSON-safe copy: floats rounded to 6 significant digits, NaN/inf as null."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    return value


def _first_lines(path: Path, keep: int) -> bytes:
    """The first ``keep`` lines of ``path``; OSError if it holds fewer."""
    if keep == 0:
        return b""
    data = path.read_bytes() if path.exists() else b""
    lines = data.splitlines(keepends=True)
    complete = [line for line in lines if line.endswith(b"\n")]
    if len(complete) < keep:
        raise OSError(
            f"{path}: holds {len(complete)} complete lines but the checkpoint covers {keep}; "
            "the run folder does not belong to this checkpoint"
        )
    return b"".join(complete[:keep])


class TrialOutput:
    """The files of one ``trial-<k>`` folder."""

    def __init__(self, folder: Path, agents: list[str], csv_enabled: bool = True) -> None:
        self.folder = folder
        self.columns = csv_columns(agents)
        self.csv_enabled = csv_enabled
        self.csv_path = folder / "iterations.csv"
        self.events_path = folder / "events.jsonl"
        self.csv_lines = 0
        self.jsonl_lines = 0
        self._csv: IO[str] | None = None
        self._events: IO[str] | None = None

    def open(self, resume_lines: tuple[int, int] | None = None) -> None:
        """Starts fresh files, or cuts existing ones back to (csv, jsonl) line counts."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if resume_lines is None:
            self.csv_lines = self.jsonl_lines = 0
            if self.csv_enabled:
                self.csv_path.write_text(",".join(self.columns) + "\n")
                self.csv_lines = 1
            self.events_path.write_text("")
        else:
            self.csv_lines, self.jsonl_lines = resume_lines
            # both files are checked before either is cut
            kept = {self.events_path: _first_lines(self.events_path, self.jsonl_lines)}
            if self.csv_enabled:
                kept[self.csv_path] = _first_lines(self.csv_path, self.csv_lines)
            for path, data in kept.items():
                path.write_bytes(data)
        if self.csv_enabled:
            self._csv = open(self.csv_path, "a", newline="")  # noqa: SIM115
        self._events = open(self.events_path, "a")  # noqa: SIM115

    def write_config(self, resolved: dict[str, Any]) -> None:
        """Writes the resolved config as ``config.toml``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.toml").write_text(tomli_w.dumps(resolved))

    def row(self, values: dict[str, Any]) -> None:
        """Appends one iterations.csv row; missing columns stay empty."""
        if self._csv is None:
            return
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"iterations.csv has no columns {sorted(unknown)}")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_cell(values.get(c)) for c in self.columns])
        self._csv.write(buf.getvalue())
        self.csv_lines += 1

    def event(self, stream: str, iteration: int, **fields: Any) -> None:
        """Appends one JSON line ``{"stream", "iteration", ...fields}``."""
        if self._events is None:
            return
        record = {"stream": stream, "iteration": iteration, **_clean(fields)}
        self._events.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.jsonl_lines += 1

    def flush(self) -> None:
        """Pushes both files to the operating system."""
        for f in (self._csv, self._events):
            if f is not None:
                f.flush()

    def close(self) -> None:
        """Flushes and closes both files."""
        self.flush()
        for f in (self._csv, self._events):
            if f is not None:
                f.close()
        self._csv = self._events = None


class TrialStatus(NamedTuple):
    """What a ``trial-<k>`` folder holds, read without trusting it (for messages only)."""

    folder: Path
    holds: bool  # the folder exists and is not empty
    checkpoint: bool
    iteration: int | None  # the checkpoint's iteration, None if unreadable or none
    finished: bool
    rows: int  # data rows of iterations.csv

    def describe(self) -> str:
        """``finished, 30 iterations`` / ``partial, 12 iterations checkpointed`` / ..."""
        if not self.checkpoint:
            return f"partial, {self.rows} rows in iterations.csv and no checkpoint"
        if self.iteration is None:
            return "a checkpoint that cannot be read"
        if self.finished:
            return f"finished, {self.iteration} iterations"
        return f"partial, {self.iteration} iterations checkpointed"


def trial_status(folder: Path) -> TrialStatus:
    """The :class:`TrialStatus` of ``folder`` (which need not exist)."""
    holds = folder.is_dir() and any(folder.iterdir())
    found = find_checkpoint(folder / "checkpoint") if holds else None
    iteration, finished = _checkpoint_progress(found) if found else (None, False)
    return TrialStatus(folder, holds, found is not None, iteration, finished, _rows(folder))


def _checkpoint_progress(path: Path) -> tuple[int | None, bool]:
    try:
        if (path / META).stat().st_size > MAX_META_BYTES:
            return None, False
        meta = json.loads((path / META).read_bytes())["meta"]
        iteration, finished = meta["iteration"], meta["finished"]
    except (OSError, ValueError, TypeError, KeyError):
        return None, False
    if type(iteration) is not int or type(finished) is not bool:
        return None, False
    return iteration, finished


def _rows(folder: Path) -> int:
    try:
        with open(folder / "iterations.csv", "rb") as f:
            return max(sum(1 for _ in f) - 1, 0)
    except OSError:
        return 0
