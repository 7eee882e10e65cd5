"""A replacement learner that dies during its own start is tried again, a bounded number of times."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from casi_orchestrator import learners as learners_module
from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.learners import LearnerPool, LearnerStartError
from casi_proto.compliance import NetContract

from .conftest import free_port

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="signals, a shell script"),
    pytest.mark.expensive,
]
CFG = NetContract().make_cfg()


def flaky_python(folder: Path, failures: int) -> Path:
    """An interpreter stand-in whose first ``failures`` starts die: exit 1, or a ready line
    for a port nobody listens on and then exit. Later starts run the real interpreter."""
    count = folder / "starts"
    script = folder / "flaky-python"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{count}" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "{count}"\n'
        f"if [ $n -le {failures} ]; then\n"
        "  if [ $((n % 2)) -eq 1 ]; then echo 'cannot start' >&2; exit 1; fi\n"
        f"  echo 'casi-learner ready on 127.0.0.1:{free_port()} policy=torch device=cpu'\n"
        "  exit 1\n"
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def starts(folder: Path) -> int:
    return int((folder / "starts").read_text())


def lose_learner(pool: LearnerPool) -> None:
    learner = pool.open("a0", None)
    learner.net.init(CFG)
    assert learner.process is not None
    learner.process.send_signal(signal.SIGKILL)
    learner.process.wait()


def test_replacements_that_die_during_start_are_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LearnerPool(LearnersCfg(start_timeout=120.0), tmp_path) as pool:
        lose_learner(pool)
        pool.python = str(flaky_python(tmp_path, failures=2))
        new = pool.restart("a0")
        new.net.init(CFG)
        assert new.net.predict(np.zeros((2, 10), np.float32))[0].shape[0] == 2
    assert starts(tmp_path) == 3
    err = capsys.readouterr().err
    assert "start 1 of 4 of a replacement learner for agent 'a0' failed" in err
    assert "start 2 of 4" in err and "start 3 of 4" not in err


def test_restarts_give_up_after_a_bounded_number_of_starts(tmp_path: Path) -> None:
    with LearnerPool(LearnersCfg(start_timeout=120.0), tmp_path) as pool:
        lose_learner(pool)
        pool.python = str(flaky_python(tmp_path, failures=100))
        began = time.monotonic()
        with pytest.raises(LearnerStartError) as info:
            pool.restart("a0")
        took = time.monotonic() - began
    attempts = learners_module.RESTART_ATTEMPTS
    assert starts(tmp_path) == attempts
    assert f"{attempts} starts of a replacement failed" in str(info.value)
    assert took < 60.0  # the backoff: 1 + 2 + 4 s, and starts that fail at once
