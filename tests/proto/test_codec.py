"""numpy <-> casi.v1 codec: round trips for every dtype, wire format, error messages."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from casi.v1 import net_pb2
from casi_proto import codec
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import INVALID_ARGUMENT, NetError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = {
    "float32": net_pb2.DTYPE_FLOAT32,
    "float64": net_pb2.DTYPE_FLOAT64,
    "float16": net_pb2.DTYPE_FLOAT16,
    "int8": net_pb2.DTYPE_INT8,
    "int16": net_pb2.DTYPE_INT16,
    "int32": net_pb2.DTYPE_INT32,
    "int64": net_pb2.DTYPE_INT64,
    "uint8": net_pb2.DTYPE_UINT8,
    "bool": net_pb2.DTYPE_BOOL,
}
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 2, 3, 2)]


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(n) % 3 == 0).reshape(shape)
    return (np.arange(n) - n // 2).astype(dtype).reshape(shape)


def invalid(call, *words: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(NetError) as info:
        call()
    assert info.value.code == INVALID_ARGUMENT
    for word in words:
        assert word in info.value.message, info.value.message
    return info.value.message


def test_every_proto_dtype_is_covered() -> None:
    wire = {v.number for v in net_pb2.DType.DESCRIPTOR.values} - {net_pb2.DTYPE_UNSPECIFIED}
    assert wire == set(DTYPES.values())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip(dtype: str, shape: tuple[int, ...]) -> None:
    arr = sample(dtype, shape)
    t = codec.to_tensor(arr)
    assert t.dtype == DTYPES[dtype]
    assert list(t.shape) == list(shape)
    back = codec.from_tensor(t, "x", dtype=dtype, ndim=len(shape))
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    assert back.tobytes() == arr.tobytes()


def test_wire_bytes_are_little_endian_row_major() -> None:
    t = codec.to_tensor(np.array([[1, 2], [3, 256]], np.int32))
    assert t.data == bytes([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0])
    assert codec.to_tensor(np.float32(1.0)).data == bytes([0, 0, 0x80, 0x3F])
    assert codec.to_tensor(np.array([True, False])).data == b"\x01\x00"


def test_big_endian_and_non_contiguous_inputs() -> None:
    big = np.array([[1, 2, 3], [4, 5, 258]], dtype=">i4")
    t = codec.to_tensor(big)
    assert t.dtype == net_pb2.DTYPE_INT32
    assert t.data[-4:] == bytes([2, 1, 0, 0])
    np.testing.assert_array_equal(codec.from_tensor(t, "x"), big)
    strided = np.arange(24, dtype=">f8").reshape(4, 6)[::2, ::-3].T
    assert not strided.flags.c_contiguous
    back = codec.from_tensor(codec.to_tensor(strided), "x")
    np.testing.assert_array_equal(back, strided)
    assert back.shape == (2, 2)


def test_decoding_is_zero_copy_and_read_only() -> None:
    t = codec.to_tensor(np.arange(1000, dtype=np.float32))
    a = codec.from_tensor(t, "x")
    assert not a.flags.writeable and not a.flags.owndata
    assert a.base is not None


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in DTYPES]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_round_trip_property(arr: np.ndarray) -> None:
    back = codec.from_tensor(codec.to_tensor(arr), "x")
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()  # bit-exact, NaN payloads included


def test_unsupported_dtype_is_refused_by_name() -> None:
    invalid(lambda: codec.to_tensor(np.zeros(2, np.complex64), "obs"), "obs", "complex64")
    invalid(lambda: codec.to_tensor(np.zeros(2, np.uint16), "obs"), "obs", "uint16")


def test_error_byte_length() -> None:
    t = codec.to_tensor(np.zeros((4, 64), np.float32))
    t.data = t.data[:1000]
    msg = invalid(lambda: codec.from_tensor(t, "obs"))
    assert msg == "obs: 1000 bytes for float32 [4, 64] needs 1024"


def test_error_dtype_and_shape() -> None:
    t = codec.to_tensor(np.zeros((4, 64), np.float64))
    msg = invalid(lambda: codec.from_tensor(t, "obs", dtype=np.float32))
    assert msg == "obs: expected dtype float32, got float64 [4, 64]"
    t = codec.to_tensor(np.zeros((4, 64, 1), np.float32))
    msg = invalid(lambda: codec.from_tensor(t, "obs", ndim=2))
    assert msg == "obs: expected 2 dimensions, got float32 [4, 64, 1]"
    t = codec.to_tensor(np.zeros((4, 63), np.float32))
    msg = invalid(lambda: codec.from_tensor(t, "obs", shape=(None, 64)))
    assert msg == "obs: expected shape [*, 64], got float32 [4, 63]"


def test_error_garbage_tensors() -> None:
    invalid(
        lambda: codec.from_tensor(net_pb2.Tensor(), "obs", dtype=np.float32),
        "obs: expected float32, got a missing tensor",
    )
    invalid(
        lambda: codec.from_tensor(net_pb2.Tensor(dtype=42, shape=[1]), "obs"),
        "obs: dtype 42 is not a casi.v1.DType",
    )
    negative = net_pb2.Tensor(dtype=net_pb2.DTYPE_FLOAT32, shape=[-2, 3])
    invalid(lambda: codec.from_tensor(negative, "obs"), "obs", "[-2, 3]", "negative")
    huge = net_pb2.Tensor(dtype=net_pb2.DTYPE_FLOAT32, shape=[2**40, 2**40], data=b"abcd")
    invalid(lambda: codec.from_tensor(huge, "obs"), "obs: 4 bytes for float32")
    bad_bool = net_pb2.Tensor(dtype=net_pb2.DTYPE_BOOL, shape=[3], data=b"\x00\x01\x02")
    invalid(lambda: codec.from_tensor(bad_bool, "mask"), "mask", "0 or 1")


def test_max_bytes() -> None:
    t = codec.to_tensor(np.zeros(300, np.float32))
    invalid(lambda: codec.from_tensor(t, "obs", max_bytes=1000), "obs", "1200", "1000")
    assert codec.from_tensor(t, "obs", max_bytes=1200).shape == (300,)


def make_sequences(b: int = 2, t: int = 3, d: int = 4) -> Sequences:
    rng = np.random.default_rng(0)
    f = lambda: rng.random((b, t), dtype=np.float32)  # noqa: E731
    return Sequences(
        obs=rng.random((b, t, d), dtype=np.float32),
        actions=rng.integers(0, 5, (b, t, 3)),
        logp_old=f(),
        values_old=f(),
        advantages=f(),
        returns=f(),
        mask=np.ones((b, t), np.float32),
    )


def test_sequences_round_trip() -> None:
    plain = make_sequences()
    allowed = (np.random.default_rng(1).random((*plain.mask.shape, 7)) > 0.5).astype(np.float32)
    for seq in (plain, plain._replace(action_mask=allowed)):
        step, back = codec.sequences_from_proto(codec.sequences_to_proto(17, seq))
        assert step == 17
        for name in Sequences._fields:
            np.testing.assert_array_equal(getattr(back, name), getattr(seq, name))
            assert getattr(getattr(back, name), "dtype", None) == getattr(
                getattr(seq, name), "dtype", None
            )
    assert codec.sequences_from_proto(codec.sequences_to_proto(1, plain))[1].action_mask is None


def test_sequences_refuse_mismatched_fields() -> None:
    seq = make_sequences()
    bad = codec.sequences_to_proto(1, seq._replace(mask=np.ones((2, 4), np.float32)))
    msg = invalid(lambda: codec.sequences_from_proto(bad))
    assert msg == "mask: expected shape [2, 3], got float32 [2, 4]"
    bad = codec.sequences_to_proto(1, seq._replace(actions=seq.actions.astype(np.int32)))
    invalid(
        lambda: codec.sequences_from_proto(bad),
        "actions: expected dtype int64, got int32 [2, 3, 3]",
    )


def test_params_round_trip_bit_exact() -> None:
    w = np.array([[1.5, np.nan], [-0.0, np.inf]], np.float32)
    params = Params({"w": w, "steps": np.int64(3)}, {"state.w.exp_avg": w * 2}, version=9)
    back = codec.params_from_proto(codec.params_to_proto(params))
    assert back.version == 9 and sorted(back.tensors) == ["steps", "w"]
    assert back.tensors["w"].tobytes() == w.tobytes()
    assert back.tensors["steps"].shape == () and back.tensors["steps"] == 3
    assert back.optimizer["state.w.exp_avg"].tobytes() == (w * 2).tobytes()


def test_params_error_names_the_key() -> None:
    msg = net_pb2.Params(tensors={"trunk.0.weight": net_pb2.Tensor(dtype=1, shape=[2], data=b"")})
    invalid(lambda: codec.params_from_proto(msg), "tensors[trunk.0.weight]: 0 bytes")


def test_predictions_and_loss() -> None:
    logits, values = np.ones((3, 7), np.float32), np.arange(3, dtype=np.float32)
    got = codec.predictions_from_proto(codec.predictions_to_proto(logits, values))
    np.testing.assert_array_equal(got[0], logits)
    np.testing.assert_array_equal(got[1], values)
    short = codec.predictions_to_proto(logits, values[:2])
    invalid(lambda: codec.predictions_from_proto(short), "values:", "got float32 [2]")
    stats = {k: float(i) + 0.5 for i, k in enumerate(LOSS_FIELDS)}
    assert codec.loss_from_proto(codec.loss_to_proto(stats)) == stats
    invalid(lambda: codec.loss_to_proto({"policy_loss": 1.0}), "value_loss")


def test_messages_are_filled_in_place_with_the_same_bytes_as_a_built_tensor() -> None:
    obs = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert codec.observations_to_proto(obs) == net_pb2.Observations(obs=codec.to_tensor(obs))
    logits, values = obs[:, :2], obs[:, 0]
    expected = net_pb2.Predictions(logits=codec.to_tensor(logits), values=codec.to_tensor(values))
    assert codec.predictions_to_proto(logits, values) == expected
    params = Params({"w": obs}, {"state.w.step": np.float32(2.0)}, 5)
    msg = codec.params_to_proto(params)
    assert msg.tensors["w"] == codec.to_tensor(obs) and msg.version == 5
    # filling a tensor again replaces its shape and bytes
    t = codec.fill_tensor(net_pb2.Tensor(), np.zeros((2, 3, 4), np.int64))
    assert codec.fill_tensor(t, obs) == codec.to_tensor(obs)


def _shape_only(n_dims: int) -> net_pb2.Tensor:
    """A float32 Tensor whose shape lists ``n_dims`` ones, parsed from its wire bytes."""
    packed = b"\x01" * n_dims
    length = bytearray()
    n = len(packed)
    while True:
        length.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    wire = b"\x08\x01" + b"\x12" + bytes(length) + packed + b"\x1a\x04abcd"
    return net_pb2.Tensor.FromString(wire)


@pytest.mark.parametrize("n_dims", [codec.MAX_DIMS + 1, 65])
def test_too_many_dimensions_refused_by_the_limit(n_dims: int) -> None:
    t = _shape_only(n_dims)
    assert len(t.shape) == n_dims and t.data == b"abcd"
    msg = invalid(lambda: codec.from_tensor(t, "obs"))
    assert msg == f"obs: expected at most {codec.MAX_DIMS} dimensions, got float32 with {n_dims}"
    if n_dims <= 64:  # numpy's own limit
        too_many = np.zeros([1] * n_dims, np.float32)
        invalid(lambda: codec.to_tensor(too_many, "obs"), "obs", "at most")
    assert codec.from_tensor(_shape_only(codec.MAX_DIMS), "obs").shape == (1,) * codec.MAX_DIMS


def test_millions_of_dimensions_refused_quickly_without_allocating() -> None:
    request = net_pb2.Observations(obs=_shape_only(5_000_000))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        invalid(lambda: codec.observations_from_proto(request), "obs", "at most 8 dimensions")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 0.5
    assert peak < 100_000, f"{peak} bytes allocated to refuse a shape"


@pytest.mark.parametrize(
    "shape", [[0, 2**62], [2**31 + 1, 0], [0, 2**20, 2**20, 2**20], [2**63 - 1, 0, 3]]
)
def test_empty_tensor_claiming_too_many_elements_refused(shape: list[int]) -> None:
    t = net_pb2.Tensor(dtype=net_pb2.DTYPE_FLOAT32, shape=shape, data=b"")
    invalid(lambda: codec.from_tensor(t, "obs"), "obs: expected at most 2147483648 elements")
    ok = net_pb2.Tensor(dtype=net_pb2.DTYPE_FLOAT32, shape=[0, 2**31], data=b"")
    assert codec.from_tensor(ok, "obs").shape == (0, 2**31)
