"""Atomic checkpoint directories: ``arrays.npz`` + ``meta.json``.

``meta.json`` holds the format tag ``casi-checkpoint/1``, the byte size and
sha256 of ``arrays.npz``, the name, dtype and shape of every array, and the
caller's ``meta``. Arrays are written as ``.npy`` members of a zip file (what
``np.savez`` writes, without its reserved keyword names) and read with
``allow_pickle=False``: object arrays are refused both ways.

Writing ``<dir>/<name>``:

1. remove leftovers of an earlier crash: ``.<name>.tmp-*`` directories, and
   ``<name>.old`` when ``<name>`` itself is there;
2. write both files into ``.<name>.tmp-<pid>``, fsync them and the directory;
3. rename ``<name>`` to ``<name>.old`` (if there is one), rename the temporary
   directory to ``<name>``, fsync ``<dir>``, remove ``<name>.old``.

At every moment a complete checkpoint is on disk as ``<name>`` or as
``<name>.old``. :func:`read_checkpoint` reads ``<name>``; only when that is
missing does it read ``<name>.old`` (and logs a warning naming it).
:func:`find_checkpoint` tells which one would be read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from casi_proto.api import Params

FORMAT = "casi-checkpoint/1"
ARRAYS = "arrays.npz"
META = "meta.json"

log = logging.getLogger(__name__)


class CheckpointError(Exception):
    """A checkpoint that cannot be read or written; the message names the file."""


def params_arrays(params: Params, prefix: str) -> dict[str, np.ndarray]:
    """A learner's state as checkpoint arrays, every key starting with ``prefix``.

    The naming scheme of every Params in a checkpoint: ``<prefix>version`` int64 [1],
    ``<prefix>tensors/<name>`` and ``<prefix>optimizer/<name>`` (the names of ``Params``).
    """
    arrays = {f"{prefix}tensors/{k}": v for k, v in params.tensors.items()}
    arrays.update({f"{prefix}optimizer/{k}": v for k, v in params.optimizer.items()})
    arrays[f"{prefix}version"] = np.array([params.version], np.int64)
    return arrays


def read_params(arrays: dict[str, np.ndarray], prefix: str) -> Params:
    """The Params that :func:`params_arrays` stored under ``prefix``; KeyError if none."""
    version = arrays[prefix + "version"]
    return Params(
        tensors=prefixed(arrays, prefix + "tensors/"),
        optimizer=prefixed(arrays, prefix + "optimizer/"),
        version=int(version[0]),
    )


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose key starts with ``prefix``, keyed by the rest of the key."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def find_checkpoint(path: Path) -> Path | None:
    """``path`` if it exists, else its backup left by an interrupted write, else None."""
    path = Path(path)
    if path.exists():
        return path
    return backup_path(path) if backup_path(path).exists() else None


def write_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` to the directory ``path``, replacing it atomically."""
    path = Path(path)
    _check_arrays(arrays)
    try:
        meta_text = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: meta is not JSON-serialisable: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    npz = tmp / ARRAYS
    _write_npz(npz, arrays)
    description = {
        "format": FORMAT,
        "arrays_bytes": npz.stat().st_size,
        "arrays_sha256": _sha256(npz),
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
        "meta": json.loads(meta_text),
    }
    _write_synced(tmp / META, json.dumps(description, indent=1).encode())
    _fsync_dir(tmp)
    backup = backup_path(path)
    if path.exists():
        os.replace(path, backup)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(backup, ignore_errors=True)


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint; raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    found = find_checkpoint(path)
    if found is None:
        raise CheckpointError(f"checkpoint {path}: missing directory (and no {backup_path(path)})")
    if found != path:
        log.warning("checkpoint %s is missing; reading the backup %s", path, found)
    description = _read_meta(found / META)
    npz = found / ARRAYS
    _verify_bytes(npz, description)
    arrays = _read_npz(npz)
    _verify_arrays(npz, arrays, description["arrays"])
    return arrays, description["meta"]


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"checkpoint array names must be non-empty strings, got {name!r}")
        if not isinstance(a, np.ndarray):
            raise CheckpointError(f"checkpoint array {name!r}: expected np.ndarray, got {type(a)}")
        if a.dtype.hasobject:
            raise CheckpointError(
                f"checkpoint array {name!r} has dtype {a.dtype}: object arrays need pickle, "
                "which checkpoints never use"
            )


def _remove_leftovers(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if path.exists():
        shutil.rmtree(backup_path(path), ignore_errors=True)


def _write_npz(file: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(file, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_synced(file: Path, data: bytes) -> None:
    with open(file, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_meta(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        description = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint file {file} is not valid JSON: {e}") from e
    tag = description.get("format") if isinstance(description, dict) else None
    if tag != FORMAT:
        raise CheckpointError(
            f"checkpoint file {file} is foreign: format {tag!r}, expected {FORMAT!r}"
        )
    for key, kind in (("arrays_bytes", int), ("arrays_sha256", str), ("arrays", dict)):
        if not isinstance(description.get(key), kind):
            raise CheckpointError(
                f"checkpoint file {file}: field {key!r} missing or not {kind.__name__}"
            )
    description.setdefault("meta", {})
    return description


def _verify_bytes(npz: Path, description: dict[str, Any]) -> None:
    if not npz.is_file():
        raise CheckpointError(f"checkpoint file {npz} is missing")
    size, expected = npz.stat().st_size, description["arrays_bytes"]
    if size < expected:
        raise CheckpointError(f"checkpoint file {npz} is truncated: {size} bytes of {expected}")
    if size != expected:
        raise CheckpointError(f"checkpoint file {npz} has {size} bytes, expected {expected}")
    digest = _sha256(npz)
    if digest != description["arrays_sha256"]:
        raise CheckpointError(
            f"checkpoint file {npz}: checksum mismatch, sha256 {digest}, "
            f"expected {description['arrays_sha256']} (corrupted)"
        )


def _read_npz(npz: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint file {npz} cannot be read: {e}") from e


def _verify_arrays(
    npz: Path, arrays: dict[str, np.ndarray], expected: dict[str, dict[str, Any]]
) -> None:
    if set(arrays) != set(expected):
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        raise CheckpointError(
            f"checkpoint file {npz}: arrays missing {missing}, unexpected {extra}"
        )
    for name, a in arrays.items():
        want = expected[name]
        if a.dtype.str != want.get("dtype") or list(a.shape) != want.get("shape"):
            raise CheckpointError(
                f"checkpoint file {npz}: array {name!r} is {a.dtype.str}{list(a.shape)}, "
                f"meta.json says {want.get('dtype')}{want.get('shape')}"
            )
