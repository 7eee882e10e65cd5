import hashlib
import json
import logging
import os

import numpy as np
import pytest
from casi_orchestrator.checkpoint import (
    FORMAT,
    CheckpointError,
    find_checkpoint,
    read_checkpoint,
    write_checkpoint,
)


def reseal(path) -> None:
    """Rewrites the manifest to match the files: what a careful forger would do."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


def sample_arrays(scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "agent/a0/tensors/trunk.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4) * scale,
        "agent/a0/bonus/keys": np.array([1, 2**63 + 5], np.uint64),
        "rng/state": np.array([2**62, -3], np.int64),
        "file": np.array(True),  # a name np.savez would take for its own argument
        "empty": np.zeros((0, 5), np.float64),
    }


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "checkpoint"
    meta = {"iteration": 12, "seed": 3, "name": "exp2", "metric": float("nan")}
    write_checkpoint(path, sample_arrays(), meta)
    arrays, got = read_checkpoint(path)
    assert_same(arrays, sample_arrays())
    assert got["iteration"] == 12 and got["name"] == "exp2" and np.isnan(got["metric"])
    description = json.loads((path / "meta.json").read_text())
    assert description["format"] == FORMAT == "casi-checkpoint/2"
    assert description["arrays"]["rng/state"] == {"dtype": "<i8", "shape": [2]}
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == FORMAT
    for name in ("arrays.npz", "meta.json"):
        data = (path / name).read_bytes()
        assert manifest["files"][name] == {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_replacement_keeps_only_the_new_one(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(1.0), {"iteration": 1})
    write_checkpoint(path, sample_arrays(2.0), {"iteration": 2})
    arrays, meta = read_checkpoint(path)
    assert meta["iteration"] == 2
    assert_same(arrays, sample_arrays(2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_crash_while_writing_leaves_the_old_one_readable(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(1.0), {"iteration": 1})
    # a writer killed halfway: its temporary directory holds a partial npz
    crashed = tmp_path / ".checkpoint.tmp-99999"
    crashed.mkdir()
    (crashed / "arrays.npz").write_bytes(b"PK\x03\x04partial")
    arrays, meta = read_checkpoint(path)
    assert meta["iteration"] == 1
    assert_same(arrays, sample_arrays(1.0))
    write_checkpoint(path, sample_arrays(3.0), {"iteration": 3})
    assert read_checkpoint(path)[1]["iteration"] == 3
    assert not crashed.exists()


def test_crash_between_the_renames_falls_back_to_the_backup(tmp_path, caplog):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(1.0), {"iteration": 1})
    os.replace(path, tmp_path / "checkpoint.old")  # old moved aside, new not yet in place
    assert find_checkpoint(path) == tmp_path / "checkpoint.old"
    with caplog.at_level(logging.WARNING):
        arrays, meta = read_checkpoint(path)
    assert meta["iteration"] == 1 and "checkpoint.old" in caplog.text
    write_checkpoint(path, sample_arrays(2.0), {"iteration": 2})
    assert find_checkpoint(path) == path
    assert read_checkpoint(path)[1]["iteration"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_missing_directory(tmp_path):
    assert find_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(CheckpointError, match=r"nothing: missing directory"):
        read_checkpoint(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["arrays.npz", "meta.json", "manifest.json"])
def test_missing_file(tmp_path, name):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(), {})
    (path / name).unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint file .*checkpoint/{name} is missing"):
        read_checkpoint(path)


def test_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(), {})
    npz = path / "arrays.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{npz} is truncated: {len(data) // 2} bytes of"):
        read_checkpoint(path)


def test_checksum_mismatch_is_refused(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(), {})
    npz = path / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="arrays.npz: checksum mismatch"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "content, why",
    [
        ('{"format": "other-tool/2", "arrays": {}}', "foreign: format 'other-tool/2'"),
        ('{"weights": [1, 2]}', "foreign: format None"),
        ("[1, 2, 3]", "foreign"),
        ("not json", "not valid JSON"),
    ],
)
def test_foreign_manifest_or_meta_is_refused(tmp_path, content, why):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(), {})
    (path / "manifest.json").write_text(content)
    with pytest.raises(CheckpointError, match=f"manifest.json (is )?{why}"):
        read_checkpoint(path)
    write_checkpoint(path, sample_arrays(), {})
    (path / "meta.json").write_text(content)
    reseal(path)
    with pytest.raises(CheckpointError, match=f"meta.json (is )?{why}"):
        read_checkpoint(path)


def test_object_arrays_are_refused_both_ways(tmp_path):
    path = tmp_path / "checkpoint"
    with pytest.raises(CheckpointError, match="'bad' has dtype object"):
        write_checkpoint(path, {"bad": np.array([{"a": 1}], dtype=object)}, {})
    assert not path.exists()
    # a hand-made checkpoint whose npz holds a pickled object array, with a matching checksum
    write_checkpoint(path, {"x": np.zeros(2)}, {})
    npz = path / "arrays.npz"
    np.savez(npz, x=np.array([{"a": 1}], dtype=object))
    reseal(path)
    with pytest.raises(
        CheckpointError, match="arrays.npz cannot be read: dtype \\|O .*not allowed"
    ):
        read_checkpoint(path)


def test_array_list_must_match_meta(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(), {})
    description = json.loads((path / "meta.json").read_text())
    description["arrays"]["rng/state"]["shape"] = [3]
    (path / "meta.json").write_text(json.dumps(description))
    reseal(path)
    with pytest.raises(
        CheckpointError, match="'rng/state.npy' is <i8\\[2\\], meta.json says <i8\\[3\\]"
    ):
        read_checkpoint(path)


def test_unserialisable_meta_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "checkpoint"
    write_checkpoint(path, sample_arrays(1.0), {"iteration": 1})
    with pytest.raises(CheckpointError, match="meta is not JSON-serialisable"):
        write_checkpoint(path, sample_arrays(2.0), {"when": object()})
    assert read_checkpoint(path)[1]["iteration"] == 1
