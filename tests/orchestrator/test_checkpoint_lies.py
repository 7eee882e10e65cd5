"""Checkpoints that lie: edited meta, old formats, forged .npy headers, foreign members, bad
parameters. Each is refused naming the file (and the key), and leaves trial-<k>/ untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from casi_orchestrator.trainer import ResumeError

from .test_trainer import config, run_trial


def reseal(path: Path) -> None:
    """Rewrites the manifest to match the files: what a careful forger would do."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_meta(path: Path, change: Any, seal: bool = True) -> None:
    description = json.loads((path / "meta.json").read_text())
    change(description)
    (path / "meta.json").write_text(json.dumps(description, indent=1))
    if seal:
        reseal(path)


def npy_bytes(header: dict[str, Any], data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def forge_npz(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path / "arrays.npz", "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def one_array(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint"
    write_checkpoint(path, {"x": np.zeros(4, np.float32)}, {"iteration": 1})
    return path


def test_hand_edited_meta_is_refused_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint"
    write_checkpoint(path, {"x": np.zeros(2, np.float32)}, {"iteration": 4, "stopped": [False]})
    edit_meta(path, lambda d: d["meta"].update(iteration=5), seal=False)  # same size
    with pytest.raises(CheckpointError, match=r"checkpoint/meta.json: checksum mismatch"):
        read_checkpoint(path)


def test_an_old_checkpoint_without_a_manifest_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = one_array(tmp_path)
    (path / "manifest.json").unlink()
    edit_meta(path, lambda d: d.update(format="casi-checkpoint/1"), seal=False)
    with pytest.raises(CheckpointError, match=r"has no manifest.json: it was written by an older"):
        read_checkpoint(path)


def test_a_header_claiming_a_terabyte_is_refused_before_allocating(tmp_path: Path) -> None:
    path = one_array(tmp_path)
    n = 250_000_000_000
    header = {"descr": "<f4", "fortran_order": False, "shape": (n,)}
    forge_npz(path, {"x.npy": npy_bytes(header, b"\0" * 16)})
    edit_meta(path, lambda d: d["arrays"]["x"].update(shape=[n]))
    with pytest.raises(CheckpointError, match=r"'x.npy': its header claims 1000000000000 bytes"):
        read_checkpoint(path)


def test_members_other_than_the_arrays_are_refused(tmp_path: Path) -> None:
    path = one_array(tmp_path)
    good = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (4,)}, b"\0" * 16)
    forge_npz(path, {"x.npy": good, "evil.py": b"print('hi')"})
    reseal(path)
    with pytest.raises(CheckpointError, match=r"arrays.npz: unexpected member 'evil.py'"):
        read_checkpoint(path)
    forge_npz(path, {"x.npy": good, "x.npy2": good})
    reseal(path)
    with pytest.raises(CheckpointError, match=r"unexpected member 'x.npy2'"):
        read_checkpoint(path)


def test_compressed_members_are_refused(tmp_path: Path) -> None:
    path = one_array(tmp_path)
    good = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (4,)}, b"\0" * 16)
    forge_npz(path, {"x.npy": good}, zipfile.ZIP_DEFLATED)
    reseal(path)
    with pytest.raises(CheckpointError, match=r"'x.npy' is compressed"):
        read_checkpoint(path)


@pytest.mark.parametrize("descr", [">f4", "<c8", "|O", "<U3", "<M8[s]"])
def test_dtypes_outside_the_allow_list_are_refused(tmp_path: Path, descr: str) -> None:
    path = one_array(tmp_path)
    itemsize = np.dtype(descr).itemsize
    forge_npz(
        path,
        {"x.npy": npy_bytes({"descr": descr, "fortran_order": False, "shape": (4,)},
                            b"\0" * 4 * itemsize)},
    )  # fmt: skip
    reseal(path)
    with pytest.raises(CheckpointError, match=r"arrays.npz cannot be read: dtype .* not allowed"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"'x' (is .*: expected one of|has dtype object)"):
        write_checkpoint(tmp_path / "other", {"x": np.zeros(2, np.dtype(descr))}, {})


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda d: d["arrays"]["x"].update(dtype="|O"), "dtype '|O' is not one of"),
        (lambda d: d["arrays"]["x"].update(shape=["4"]), "shape \\['4'\\] is not a list"),
        (lambda d: d["arrays"]["x"].update(shape=[-1]), "shape \\[-1\\] is not a list"),
        (lambda d: d["arrays"].update(x=[1, 2]), "dtype None"),
        (lambda d: d.update(arrays=[1]), "field 'arrays' missing or not a table"),
        (lambda d: d.update(meta="x"), "field 'meta' missing or not a table"),
    ],
)
def test_array_descriptions_are_type_checked(tmp_path: Path, change: Any, why: str) -> None:
    path = one_array(tmp_path)
    edit_meta(path, change)
    with pytest.raises(CheckpointError, match=f"meta.json: .*{why}"):
        read_checkpoint(path)


# ---------------------------------------------------------------- resuming a trial


def trial_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), os.stat(p).st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished_trial(tmp_path: Path) -> tuple[Any, Path]:
    cfg = config(tmp_path, algorithm={"iterations": 3})
    run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, stop_at=2)
    return cfg, tmp_path / "trial-0" / "checkpoint"


def refused(cfg: Any, tmp_path: Path, match: str) -> None:
    before = trial_files(tmp_path / "trial-0")
    with pytest.raises(ResumeError, match=match):
        run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)
    assert trial_files(tmp_path / "trial-0") == before


META_LIES = [
    ("iteration", "3", "meta.iteration: Input should be a valid integer"),
    ("iteration", -1, "meta.iteration: Input should be greater than or equal to 0"),
    ("agent_steps", 1.5, "meta.agent_steps: Input should be a valid integer"),
    ("stopped", [1], "meta.stopped.0: Input should be a valid boolean"),
    ("stopped", [False, True], "meta.stopped: 2 entries for 1 agents"),
    ("stopped", "no", "meta.stopped: Input should be a valid list"),
    ("last_eval", [1, 2], "meta.last_eval: Input should be a valid dictionary"),
    ("last_eval", {"a0": {"win_rate": "high"}}, "meta.last_eval.a0.win_rate"),
    ("wall_time", None, "meta.wall_time: Input should be a valid number"),
    ("finished", "yes", "meta.finished: Input should be a valid boolean"),
    ("csv_lines", None, "meta.csv_lines"),
    ("surprise", 1, "meta.surprise: Extra inputs are not permitted"),
]


@pytest.mark.parametrize("key, value, why", META_LIES, ids=[f"{k}={v}" for k, v, _ in META_LIES])
def test_every_meta_field_is_type_checked_and_nothing_changes(
    tmp_path: Path, finished_trial: tuple[Any, Path], key: str, value: Any, why: str
) -> None:
    cfg, ckpt = finished_trial
    edit_meta(ckpt, lambda d: d["meta"].update({key: value}))
    refused(cfg, tmp_path, f"checkpoint/meta.json: {why}")


def test_a_checkpoint_of_another_trial_is_refused(
    tmp_path: Path, finished_trial: tuple[Any, Path]
) -> None:
    cfg, ckpt = finished_trial
    edit_meta(ckpt, lambda d: d["meta"].update(trial=1))
    refused(cfg, tmp_path, "checkpoint/meta.json: holds trial 1, this is trial 0")


def test_a_missing_meta_key_is_refused(tmp_path: Path, finished_trial: tuple[Any, Path]) -> None:
    cfg, ckpt = finished_trial
    edit_meta(ckpt, lambda d: d["meta"].pop("agents"))
    refused(cfg, tmp_path, "meta.json: meta.agents: Field required")


@pytest.mark.parametrize(
    "bad, why",
    [
        (np.zeros(3, np.float64), "expected float32 parameters, got float64"),
        (
            np.array([0.0, np.nan], np.float32),
            "expected finite parameters, got nan at index \\[1\\]",
        ),
    ],
)
def test_a_parameter_a_learner_would_refuse_is_refused_naming_file_and_key(
    tmp_path: Path, finished_trial: tuple[Any, Path], bad: np.ndarray, why: str
) -> None:
    cfg, ckpt = finished_trial
    arrays, _ = read_checkpoint(ckpt)
    description = json.loads((ckpt / "meta.json").read_text())
    arrays["net/a0/tensors/trunk.0.weight"] = bad
    write_checkpoint(ckpt, arrays, description["meta"])
    refused(cfg, tmp_path, f"checkpoint/arrays.npz: array 'net/a0/tensors/trunk.0.weight': {why}")


def test_a_forged_version_is_refused(tmp_path: Path, finished_trial: tuple[Any, Path]) -> None:
    cfg, ckpt = finished_trial
    arrays, _ = read_checkpoint(ckpt)
    description = json.loads((ckpt / "meta.json").read_text())
    arrays["net/a0/version"] = np.zeros(0, np.int64)
    write_checkpoint(ckpt, arrays, description["meta"])
    refused(cfg, tmp_path, "array 'net/a0/version': expected int64 \\[1\\] >= 0")


def test_an_edited_checkpoint_leaves_the_trial_folder_untouched(
    tmp_path: Path, finished_trial: tuple[Any, Path]
) -> None:
    cfg, ckpt = finished_trial
    edit_meta(ckpt, lambda d: d["meta"].update(iteration=1, csv_lines=2), seal=False)
    refused(cfg, tmp_path, "meta.json: checksum mismatch")


def test_events_too_short_leave_the_csv_uncut(tmp_path: Path, finished_trial: Any) -> None:
    cfg, _ = finished_trial
    (tmp_path / "trial-0" / "events.jsonl").write_text("")
    with open(tmp_path / "trial-0" / "iterations.csv", "a") as f:
        f.write("a row the checkpoint does not cover\n")
    refused(cfg, tmp_path, "events.jsonl: holds 0 complete lines")
