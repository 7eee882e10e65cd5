"""``casi run --resume`` on a damaged checkpoint: refused, naming the file; nothing overwritten."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import CASI, ROOT, RUN_WAIT, LearnerProcess

pytestmark = pytest.mark.expensive  # a run, then four resumes: real processes
SMOKE = ROOT / "experiments" / "smoke.toml"


@pytest.fixture(scope="module")
def honest() -> Iterator[str]:
    learner = LearnerProcess("--policy", "honest")
    yield learner.address
    learner.kill()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, honest: str) -> Path:
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run(
        [*CASI, "run", str(SMOKE), "--learner", f"a0={honest}", "--iterations", "4",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def truncate(ckpt: Path) -> Path:
    npz = ckpt / "arrays.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 3])
    return npz


def garbage_manifest(ckpt: Path) -> Path:
    (ckpt / "manifest.json").write_text('{"format": "casi-checkpoint/2", "fil')
    return ckpt / "manifest.json"


def foreign(ckpt: Path) -> Path:
    (ckpt / "manifest.json").write_text(json.dumps({"format": "someone-else/3"}))
    return ckpt / "manifest.json"


def edited_meta(ckpt: Path) -> Path:
    meta = ckpt / "meta.json"
    meta.write_text(meta.read_text().replace('"stopped": [\n   false', '"stopped": [\n   true '))
    return meta


def flipped_byte(ckpt: Path) -> Path:
    npz = ckpt / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    return npz


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (truncate, " is truncated"),
        (garbage_manifest, " is not valid JSON"),
        (foreign, " is foreign"),
        (flipped_byte, ": checksum mismatch"),
        (edited_meta, ": checksum mismatch"),
    ],
    ids=["truncated", "garbage-manifest", "foreign", "flipped-byte", "edited-meta"],
)
def test_resume_refuses_a_damaged_checkpoint_naming_the_file(
    tmp_path: Path,
    finished_run: Path,
    honest: str,
    damage: Callable[[Path], Path],
    words: str,
) -> None:
    out = tmp_path / "runs"
    shutil.copytree(finished_run, out)
    trial = out / "smoke" / "trial-0"
    damaged = damage(trial / "checkpoint")
    before = {p.name: p.read_bytes() for p in (trial / "checkpoint").iterdir()}
    csv_before = (trial / "iterations.csv").read_text()
    proc = subprocess.run(
        [*CASI, "run", str(SMOKE), "--learner", f"a0={honest}", "--iterations", "6",
         "--out", str(out), "--resume"],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"casi: checkpoint file {damaged}{words}" in proc.stderr
    # never a silent fresh start: the checkpoint and the outputs are as they were
    assert {p.name: p.read_bytes() for p in (trial / "checkpoint").iterdir()} == before
    assert (trial / "iterations.csv").read_text() == csv_before
