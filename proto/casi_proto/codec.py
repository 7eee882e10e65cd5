"""numpy <-> ``casi.v1`` messages.

A ``Tensor`` carries raw little-endian, row-major bytes. Encoding copies an array's
data once (``tobytes``) into a ``Tensor`` written in place inside its message (a
``Tensor`` built apart and then put into a message would be copied again). Decoding
is zero-copy (``np.frombuffer`` over the message's bytes), so decoded arrays are
read-only; copy them before writing into them. Every decoding error is a
:class:`~casi_proto.errors.NetError` ``INVALID_ARGUMENT`` that names the field,
what was expected and what was received.

Limits of every ``Tensor``, checked on the claimed shape before anything is allocated: at
most :data:`MAX_DIMS` dimensions, and at most :data:`MAX_ELEMENTS` elements (empty
dimensions counted as 1, so that ``[0, 2**62]`` is refused too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from casi.v1 import net_pb2

from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import invalid

# Wire dtype -> little-endian numpy dtype.
_TO_NUMPY: dict[net_pb2.DType, np.dtype] = {
    net_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    net_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    net_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
    net_pb2.DTYPE_INT8: np.dtype("i1"),
    net_pb2.DTYPE_INT16: np.dtype("<i2"),
    net_pb2.DTYPE_INT32: np.dtype("<i4"),
    net_pb2.DTYPE_INT64: np.dtype("<i8"),
    net_pb2.DTYPE_UINT8: np.dtype("u1"),
    net_pb2.DTYPE_BOOL: np.dtype("?"),
}
# numpy kind+size (byte order ignored) -> wire dtype.
_TO_WIRE: dict[str, net_pb2.DType] = {f"{d.kind}{d.itemsize}": w for w, d in _TO_NUMPY.items()}

MAX_DIMS = 8
"""The most dimensions a Tensor may have (numpy's own limit is 64; the contract needs 3)."""
MAX_ELEMENTS = 2**31
"""The most elements a Tensor may claim, empty dimensions counted as 1 (a protobuf message
carries less than 2 GiB)."""

SEQUENCE_FIELDS = Sequences._fields[:-1]
"""The fields every batch has (``action_mask`` is optional)."""


def dtype_name(dtype: np.dtype | int) -> str:
    """``float32``, ``int64``, ``bool``... for a numpy dtype or a wire DType."""
    if isinstance(dtype, np.dtype):
        return str(dtype.newbyteorder("="))
    np_dtype = _TO_NUMPY.get(dtype)  # type: ignore[call-overload]
    return f"unknown dtype {dtype}" if np_dtype is None else str(np_dtype.newbyteorder("="))


def wire_dtype(dtype: npt.DTypeLike, field: str = "tensor") -> net_pb2.DType:
    """The ``casi.v1.DType`` of a numpy dtype; ``INVALID_ARGUMENT`` if it has none."""
    d = np.dtype(dtype)
    wire = _TO_WIRE.get(f"{d.kind}{d.itemsize}")
    if wire is None:
        supported = ", ".join(dtype_name(w) for w in _TO_NUMPY)
        raise invalid(f"{field}: dtype {d} has no casi.v1.DType (supported: {supported})")
    return wire


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def fill_tensor(t: net_pb2.Tensor, arr: npt.ArrayLike, field: str = "tensor") -> net_pb2.Tensor:
    """Encode an array (any layout, any byte order) into the ``casi.v1.Tensor`` ``t``, in place."""
    a = np.asarray(arr)
    wire = wire_dtype(a.dtype, field)
    if a.ndim > MAX_DIMS:
        raise invalid(f"{field}: expected at most {MAX_DIMS} dimensions, got {a.ndim}")
    little = a.astype(_TO_NUMPY[wire], copy=False)
    t.dtype = wire
    t.shape[:] = a.shape
    t.data = little.tobytes(order="C")
    return t


def to_tensor(arr: npt.ArrayLike, field: str = "tensor") -> net_pb2.Tensor:
    """Encode an array (any layout, any byte order) as a new ``casi.v1.Tensor``."""
    return fill_tensor(net_pb2.Tensor(), arr, field)


def from_tensor(
    t: net_pb2.Tensor,
    field: str,
    *,
    dtype: npt.DTypeLike | None = None,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Decode a ``casi.v1.Tensor`` without copying its bytes.

    ``dtype``, ``ndim`` and ``shape`` (``None`` entries match any size) are
    checked when given, as are the byte length and ``max_bytes``.
    """
    if t.dtype == net_pb2.DTYPE_UNSPECIFIED:
        want = "a tensor" if dtype is None else dtype_name(np.dtype(dtype))
        raise invalid(f"{field}: expected {want}, got a missing tensor or DTYPE_UNSPECIFIED")
    if t.dtype not in _TO_NUMPY:
        raise invalid(f"{field}: dtype {t.dtype} is not a casi.v1.DType")
    np_dtype = _TO_NUMPY[t.dtype]
    if len(t.shape) > MAX_DIMS:  # before the shape is read: it may list millions of sizes
        raise invalid(
            f"{field}: expected at most {MAX_DIMS} dimensions, "
            f"got {dtype_name(np_dtype)} with {len(t.shape)}"
        )
    got = tuple(int(n) for n in t.shape)
    received = f"{dtype_name(np_dtype)} {_shape_text(got)}"
    if dtype is not None and np_dtype != np.dtype(dtype).newbyteorder("<"):
        raise invalid(f"{field}: expected dtype {dtype_name(np.dtype(dtype))}, got {received}")
    if any(n < 0 for n in got):
        raise invalid(f"{field}: expected no negative dimension, got {received}")
    want_ndim = len(shape) if shape is not None else ndim
    if want_ndim is not None and len(got) != want_ndim:
        raise invalid(f"{field}: expected {want_ndim} dimensions, got {received}")
    if shape is not None and any(w is not None and w != n for w, n in zip(shape, got, strict=True)):
        want = _shape_text(["*" if w is None else w for w in shape])  # type: ignore[misc]
        raise invalid(f"{field}: expected shape {want}, got {received}")
    needed = math.prod(got) * np_dtype.itemsize
    if len(t.data) != needed:
        raise invalid(f"{field}: {len(t.data)} bytes for {received} needs {needed}")
    if math.prod(max(n, 1) for n in got) > MAX_ELEMENTS:
        raise invalid(
            f"{field}: expected at most {MAX_ELEMENTS} elements (empty dimensions counted as 1), "
            f"got {received}"
        )
    if max_bytes is not None and needed > max_bytes:
        raise invalid(f"{field}: {received} is {needed} bytes, more than the limit {max_bytes}")
    if np_dtype.kind == "b" and needed and np.frombuffer(t.data, np.uint8).max() > 1:
        raise invalid(f"{field}: expected bool bytes 0 or 1, got other bytes")
    return np.frombuffer(t.data, dtype=np_dtype).reshape(got)


def observations_to_proto(obs: np.ndarray) -> net_pb2.Observations:
    msg = net_pb2.Observations()
    fill_tensor(msg.obs, obs, "obs")
    return msg


def observations_from_proto(msg: net_pb2.Observations) -> np.ndarray:
    return from_tensor(msg.obs, "obs", dtype=np.float32, ndim=2)


def predictions_to_proto(logits: np.ndarray, values: np.ndarray) -> net_pb2.Predictions:
    msg = net_pb2.Predictions()
    fill_tensor(msg.logits, logits, "logits")
    fill_tensor(msg.values, values, "values")
    return msg


def predictions_from_proto(msg: net_pb2.Predictions) -> tuple[np.ndarray, np.ndarray]:
    logits = from_tensor(msg.logits, "logits", dtype=np.float32, ndim=2)
    values = from_tensor(msg.values, "values", dtype=np.float32, shape=(logits.shape[0],))
    return logits, values


def sequences_to_proto(step: int, batch: Sequences) -> net_pb2.Sequences:
    msg = net_pb2.Sequences(step=step)
    for name in SEQUENCE_FIELDS:
        fill_tensor(getattr(msg, name), getattr(batch, name), name)
    if batch.action_mask is not None:
        fill_tensor(msg.action_mask, batch.action_mask, "action_mask")
    return msg


def sequences_from_proto(msg: net_pb2.Sequences) -> tuple[int, Sequences]:
    """``(step, Sequences)``; checks dtypes, ranks and that every field shares ``[B, T]``."""
    obs = from_tensor(msg.obs, "obs", dtype=np.float32, ndim=3)
    b, t = obs.shape[:2]
    actions = from_tensor(msg.actions, "actions", dtype=np.int64, shape=(b, t, None))
    rest = {
        name: from_tensor(getattr(msg, name), name, dtype=np.float32, shape=(b, t))
        for name in SEQUENCE_FIELDS[2:]
    }
    allowed = None
    if msg.HasField("action_mask"):
        allowed = from_tensor(msg.action_mask, "action_mask", dtype=np.float32, shape=(b, t, None))
    return int(msg.step), Sequences(obs=obs, actions=actions, **rest, action_mask=allowed)


def _fill_map(target: Any, arrays: Mapping[str, np.ndarray], kind: str) -> None:
    for k, v in arrays.items():
        fill_tensor(target[k], v, f"{kind}[{k}]")


def params_to_proto(params: Params) -> net_pb2.Params:
    msg = net_pb2.Params(version=params.version)
    _fill_map(msg.tensors, params.tensors, "tensors")
    _fill_map(msg.optimizer, params.optimizer, "optimizer")
    return msg


def params_from_proto(msg: net_pb2.Params) -> Params:
    """Decode every tensor (dtype and byte length checked); key sets are the Net's business."""
    tensors = {k: from_tensor(v, f"tensors[{k}]") for k, v in sorted(msg.tensors.items())}
    optimizer = {k: from_tensor(v, f"optimizer[{k}]") for k, v in sorted(msg.optimizer.items())}
    return Params(tensors=tensors, optimizer=optimizer, version=int(msg.version))


def loss_to_proto(stats: Mapping[str, float]) -> net_pb2.Loss:
    missing = [k for k in LOSS_FIELDS if k not in stats]
    if missing:
        raise invalid(f"loss: missing fields {missing}; expected {list(LOSS_FIELDS)}")
    return net_pb2.Loss(**{k: float(stats[k]) for k in LOSS_FIELDS})


def loss_from_proto(msg: net_pb2.Loss) -> dict[str, float]:
    return {k: float(getattr(msg, k)) for k in LOSS_FIELDS}
