"""Real processes for the fault tests: casi-learner servers the tests start, kill and restart."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
from pathlib import Path

from ..conftest import RUN_WAIT, LearnerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]
__all__ = ["RUN_WAIT", "LearnerProcess"]  # for the fault tests, which import them from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_rows(csv_path: Path, n: int, proc: subprocess.Popen[str]) -> None:
    """Waits until the run ``proc`` has written more than ``n`` lines to ``csv_path``."""

    def written() -> bool:
        return csv_path.exists() and len(csv_path.read_text().splitlines()) > n

    if not wait_until(written, RUN_WAIT, proc):
        raise AssertionError(f"{csv_path}: fewer than {n} rows (exit status {proc.poll()})")
