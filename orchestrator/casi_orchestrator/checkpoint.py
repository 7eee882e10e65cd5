"""Atomic checkpoint directories: ``arrays.npz``, ``meta.json`` and ``manifest.json``.

``manifest.json`` holds the format tag ``casi-checkpoint/2`` and the byte size and sha256 of
every other file; nothing else in the directory is read, and nothing is trusted before its
size and checksum match. ``meta.json`` holds the same tag, the name, dtype and shape of every
array, and the caller's ``meta``. Arrays are ``.npy`` members of a zip file, stored
uncompressed (what ``np.savez`` writes, without its reserved keyword names). Reading checks
every member before allocating it: the name must be one of ``meta.json``'s arrays, the dtype
one of :data:`DTYPES` (no objects, no pickle), and the shape must account for the member's
bytes exactly, within the file.

Checkpoints of the first format (``casi-checkpoint/1``, no manifest, ``meta.json`` not
checksummed) are refused with a sentence: their meta cannot be verified.

Writing ``<dir>/<name>``:

1. remove leftovers of an earlier crash: ``.<name>.tmp-*`` directories, and
   ``<name>.old`` when ``<name>`` itself is there;
2. write the three files into ``.<name>.tmp-<pid>`` (the manifest last), fsync them and the
   directory;
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
import math
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from casi_proto.api import Params

FORMAT = "casi-checkpoint/2"
OLD_FORMAT = "casi-checkpoint/1"
ARRAYS = "arrays.npz"
META = "meta.json"
MANIFEST = "manifest.json"
FILES = (ARRAYS, META)
MAX_MANIFEST_BYTES = 1 << 16
MAX_META_BYTES = 1 << 24
MAX_NDIM = 32
DTYPES = frozenset(
    ["|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8"]
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

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
    _write_npz(tmp / ARRAYS, arrays)
    description = {
        "format": FORMAT,
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
        "meta": json.loads(meta_text),
    }
    _write_synced(tmp / META, json.dumps(description, indent=1).encode())
    files = {n: {"bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in FILES}
    manifest = {"format": FORMAT, "files": files}
    _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
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
    _verify_files(found)
    description = _read_meta(found / META)
    arrays = _read_npz(found / ARRAYS, description["arrays"])
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
        if a.dtype.str not in DTYPES or a.ndim > MAX_NDIM:
            raise CheckpointError(
                f"checkpoint array {name!r} is {a.dtype.str} with {a.ndim} dimensions: "
                f"expected one of {sorted(DTYPES)} with at most {MAX_NDIM}"
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


def _load_json(file: Path, limit: int) -> Any:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    size = file.stat().st_size
    if size > limit:
        raise CheckpointError(f"checkpoint file {file} has {size} bytes, more than {limit}")
    try:
        return json.loads(file.read_bytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file {file} is not valid JSON: {e}") from e


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    file = folder / MANIFEST
    if not file.exists() and _is_old(folder / META):
        raise CheckpointError(
            f"checkpoint {folder} has no {MANIFEST}: it was written by an older casi "
            f"({OLD_FORMAT}) whose {META} is not checksummed, so it cannot be verified; "
            "resume it with the casi that wrote it, or move its trial folder away to start over"
        )
    manifest = _load_json(file, MAX_MANIFEST_BYTES)
    tag = manifest.get("format") if isinstance(manifest, dict) else None
    if tag != FORMAT:
        raise CheckpointError(
            f"checkpoint file {file} is foreign: format {tag!r}, expected {FORMAT!r}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(FILES):
        got = sorted(files) if isinstance(files, dict) else type(files).__name__
        raise CheckpointError(f"checkpoint file {file}: 'files' must list {list(FILES)}, got {got}")
    for name, entry in files.items():
        size = entry.get("bytes") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            raise CheckpointError(
                f"checkpoint file {file}: files.{name} must be {{bytes: int >= 0, sha256: str}}"
            )
        if not _SHA256.match(digest):
            raise CheckpointError(f"checkpoint file {file}: files.{name}.sha256 is not a sha256")
    return files


def _is_old(meta: Path) -> bool:
    try:
        description = _load_json(meta, MAX_META_BYTES)
    except CheckpointError:
        return False
    return isinstance(description, dict) and description.get("format") == OLD_FORMAT


def _verify_files(folder: Path) -> None:
    """Every file of the manifest has the size and sha256 the manifest says."""
    for name, entry in _read_manifest(folder).items():
        file, expected = folder / name, entry["bytes"]
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        size = file.stat().st_size
        if size < expected:
            raise CheckpointError(
                f"checkpoint file {file} is truncated: {size} bytes of {expected}"
            )
        if size != expected:
            raise CheckpointError(f"checkpoint file {file} has {size} bytes, expected {expected}")
        digest = _sha256(file)
        if digest != entry["sha256"]:
            raise CheckpointError(
                f"checkpoint file {file}: checksum mismatch, sha256 {digest}, "
                f"expected {entry['sha256']} (corrupted or edited)"
            )


def _read_meta(file: Path) -> dict[str, Any]:
    description = _load_json(file, MAX_META_BYTES)
    tag = description.get("format") if isinstance(description, dict) else None
    if tag != FORMAT:
        raise CheckpointError(
            f"checkpoint file {file} is foreign: format {tag!r}, expected {FORMAT!r}"
        )
    for key in ("arrays", "meta"):
        if not isinstance(description.get(key), dict):
            raise CheckpointError(f"checkpoint file {file}: field {key!r} missing or not a table")
    for name, want in description["arrays"].items():
        _check_description(file, name, want)
    return description


def _check_description(file: Path, name: str, want: Any) -> None:
    dtype = want.get("dtype") if isinstance(want, dict) else None
    shape = want.get("shape") if isinstance(want, dict) else None
    if not name or dtype not in DTYPES:
        raise CheckpointError(
            f"checkpoint file {file}: array {name!r}: dtype {dtype!r} is not one of "
            f"{sorted(DTYPES)}"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or any(type(d) is not int or d < 0 for d in shape)
    ):
        raise CheckpointError(
            f"checkpoint file {file}: array {name!r}: shape {shape!r} is not a list of at most "
            f"{MAX_NDIM} sizes >= 0"
        )


def _read_npz(npz: Path, expected: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(npz) as zf:
            members = _members(npz, zf, expected)
            return {name: _read_member(npz, zf, info, expected[name]) for name, info in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            TypeError, NotImplementedError, RuntimeError, SyntaxError) as e:  # fmt: skip
        raise CheckpointError(f"checkpoint file {npz} cannot be read: {e}") from e


def _members(
    npz: Path, zf: zipfile.ZipFile, expected: dict[str, dict[str, Any]]
) -> list[tuple[str, zipfile.ZipInfo]]:
    """(array name, member) of every member, which must be exactly the expected arrays."""
    size = npz.stat().st_size
    found: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name not in expected or name in found:
            raise CheckpointError(
                f"checkpoint file {npz}: unexpected member {info.filename!r} (expected one "
                "'<name>.npy' per array of meta.json)"
            )
        stored = info.compress_type == zipfile.ZIP_STORED and info.file_size == info.compress_size
        if not stored or info.header_offset + info.compress_size > size:
            raise CheckpointError(
                f"checkpoint file {npz}: member {info.filename!r} is compressed or claims "
                f"{info.file_size} bytes beyond the file's {size}"
            )
        found[name] = info
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"checkpoint file {npz}: arrays missing {missing[:5]}")
    return list(found.items())


def _read_member(
    npz: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, want: dict[str, Any]
) -> np.ndarray:
    with zf.open(info) as f:
        shape, fortran, dtype = _npy_header(f)
        where = f"checkpoint file {npz}: member {info.filename!r}"
        if dtype.str != want["dtype"] or list(shape) != want["shape"]:
            raise CheckpointError(
                f"{where} is {dtype.str}{list(shape)}, meta.json says {want['dtype']}{want['shape']}"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise CheckpointError(
                f"{where}: its header claims {nbytes} bytes of data, the member holds "
                f"{info.file_size - f.tell()}"
            )
        flat = np.empty(math.prod(shape), dtype)
        buf = flat.view(np.uint8).reshape(-1)
        done = 0
        while done < nbytes:
            chunk = f.read(min(1 << 24, nbytes - done))
            if not chunk:
                raise CheckpointError(f"{where} ends after {done} of {nbytes} bytes")
            buf[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
            done += len(chunk)
    return flat.reshape(shape, order="F" if fortran else "C")


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """The shape, order and dtype of a ``.npy`` stream, which must be one of :data:`DTYPES`."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not 1.0 or 2.0")
    if dtype.str not in DTYPES or len(shape) > MAX_NDIM:
        raise ValueError(f"dtype {dtype.str} with {len(shape)} dimensions is not allowed")
    return shape, fortran, dtype
