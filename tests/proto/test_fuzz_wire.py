"""Property-based fuzzing of what a Net reads off the wire: the tensor codec and the request
checks (casi_proto.codec, casi_proto.validate).

Whatever a request holds, decoding and checking it either succeeds or raises NetError with
INVALID_ARGUMENT (FAILED_PRECONDITION for a protocol or step mismatch); any other exception
fails. The budget is CASI_FUZZ_EXAMPLES examples per property (default 100), e.g.
``CASI_FUZZ_EXAMPLES=5000 pytest tests/proto/test_fuzz_wire.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION, codec, validate
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NetError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CASI_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GOOD_DTYPES = st.sampled_from(sorted(codec._TO_NUMPY))
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from(
    [3e38, -3e38, 1e-45, 0.0, -0.0, 1.0, 7.0]
)


def only_net_errors(call: Callable[[], Any], codes: tuple[str, ...] = (INVALID_ARGUMENT,)) -> Any:
    """``call()``'s result, or None if it raised a NetError of one of ``codes``."""
    try:
        return call()
    except NetError as exc:
        assert exc.code in codes, exc
        assert exc.message and len(exc.message) < 2000, exc.message
        return None


# -- tensors -------------------------------------------------------------------------------


honest_shapes = st.lists(st.integers(0, 5), max_size=4).map(tuple)
# the claims of issue 12: huge or negative sizes, empty tensors claiming a lot, many dimensions
HUGE = st.sampled_from([2**31, 2**62, 2**63 - 1]) | st.integers(2**31, 2**63 - 1)
lying_shapes = st.one_of(
    st.lists(st.integers(0, 5) | INT64 | HUGE, max_size=12),
    st.lists(st.just(0) | HUGE, min_size=2, max_size=3),
    st.integers(0, 80).map(lambda n: [1] * n),
).map(tuple)


@st.composite
def tensors(
    draw: st.DrawFn,
    dtype: int | None = None,
    shape: tuple[int, ...] | None = None,
    values: st.SearchStrategy[float] | None = None,
) -> net_pb2.Tensor:
    """A Tensor that is often, but not always, consistent: right dtype, shape and length."""
    honest = draw(st.booleans())
    if dtype is None or not (honest or draw(st.booleans())):
        rare = draw(st.integers(0, 7)) == 0  # an unknown or missing dtype, now and then
        dtype = draw(st.integers(-3, 40) if rare else GOOD_DTYPES)
    if shape is None or not (honest or draw(st.booleans())):
        shape = draw(honest_shapes if honest else lying_shapes)
    t = net_pb2.Tensor(dtype=dtype, shape=list(shape))  # type: ignore[arg-type]
    np_dtype = codec._TO_NUMPY.get(dtype)  # type: ignore[call-overload]
    size = math.prod(shape) if all(0 <= d <= 64 for d in shape) else None
    if size is not None and size > 64:  # keep examples small; the checks do not scale with them
        size = None
    if np_dtype is not None and size is not None and draw(st.booleans()):
        if values is not None and np_dtype.kind == "f":
            x = draw(st.lists(values, min_size=size, max_size=size))
            with np.errstate(over="ignore"):  # 3e38 is inf in float16
                t.data = np.array(x, np_dtype).tobytes()
        else:
            t.data = draw(
                st.binary(min_size=size * np_dtype.itemsize, max_size=size * np_dtype.itemsize)
            )
    else:
        t.data = draw(st.just(b"") | st.binary(max_size=64))
    return t


@FUZZ
@given(tensors())
def test_from_tensor_decodes_or_refuses_any_tensor(t: net_pb2.Tensor) -> None:
    arr = only_net_errors(lambda: codec.from_tensor(t, "x"))
    if arr is not None:
        assert arr.shape == tuple(t.shape) and arr.tobytes() == t.data
        assert len(arr.shape) <= codec.MAX_DIMS
        assert math.prod(max(d, 1) for d in arr.shape) <= codec.MAX_ELEMENTS


@FUZZ
@given(
    tensors(),
    st.sampled_from([None, np.float32, np.int64, np.bool_, np.float64]),
    st.none() | st.integers(0, 10),
    st.none() | st.lists(st.none() | st.integers(0, 6), max_size=5).map(tuple),
)
def test_from_tensor_decodes_or_refuses_against_expectations(
    t: net_pb2.Tensor, dtype: Any, ndim: int | None, shape: tuple[int | None, ...] | None
) -> None:
    arr = only_net_errors(lambda: codec.from_tensor(t, "x", dtype=dtype, ndim=ndim, shape=shape))
    if arr is not None:
        assert arr.shape == tuple(t.shape)
        assert arr.tobytes() == t.data
        assert len(arr.shape) <= codec.MAX_DIMS


@FUZZ
@given(tensors(dtype=net_pb2.DTYPE_FLOAT32, values=FLOATS), st.integers(1, 12))
def test_observations_decode_and_check(t: net_pb2.Tensor, obs_dim: int) -> None:
    def call() -> np.ndarray:
        obs = codec.observations_from_proto(net_pb2.Observations(obs=t))
        return validate.check_obs(obs, obs_dim)

    obs = only_net_errors(call)
    if obs is not None:
        assert obs.shape[1] == obs_dim and np.isfinite(obs).all()
        assert 1 <= obs.shape[0] <= validate.MAX_ROWS


# -- Train's batch -------------------------------------------------------------------------

HEADS = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(
    lambda h: [h[0], *([5] * (len(h) - 1))]
)


@st.composite
def sequences(draw: st.DrawFn) -> tuple[net_pb2.Sequences, int, list[int]]:
    b, t, obs_dim = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(1, 4))
    heads = draw(HEADS)
    f32 = net_pb2.DTYPE_FLOAT32
    msg = net_pb2.Sequences(step=draw(INT64))
    msg.obs.CopyFrom(draw(tensors(f32, (b, t, obs_dim), FLOATS)))
    actions = draw(tensors(net_pb2.DTYPE_INT64, (b, t, len(heads))))
    if draw(st.booleans()) and len(actions.data) == b * t * len(heads) * 8:
        picks = draw(
            st.lists(st.integers(-1, 6), min_size=b * t * len(heads), max_size=b * t * len(heads))
        )
        actions.data = np.array(picks, "<i8").tobytes()
    msg.actions.CopyFrom(actions)
    zero_one = st.sampled_from([0.0, 1.0]) | FLOATS
    for name in validate.SEQUENCE_FLOATS:
        values = zero_one if name == "mask" else FLOATS
        getattr(msg, name).CopyFrom(draw(tensors(f32, (b, t), values)))
    if draw(st.booleans()):
        msg.action_mask.CopyFrom(draw(tensors(f32, (b, t, sum(heads)), zero_one)))
    return msg, obs_dim, heads


@FUZZ
@given(sequences())
def test_sequences_decode_and_check(case: tuple[net_pb2.Sequences, int, list[int]]) -> None:
    msg, obs_dim, heads = case

    def call() -> Any:
        _, batch = codec.sequences_from_proto(msg)
        return validate.check_sequences(batch, obs_dim, heads)

    batch = only_net_errors(call)
    if batch is not None:
        assert ((batch.mask == 0) | (batch.mask == 1)).all()
        assert ((batch.actions >= 0) & (batch.actions < np.array(heads))).all()


# -- Params, steps and the small messages --------------------------------------------------

EXPECTED = {"w": ((2, 3), np.float32), "b": ((3,), np.float32), "s": ((), np.float32)}


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["w", "b", "s", "x", ""]) | st.text(max_size=8),
        st.one_of(
            tensors(net_pb2.DTYPE_FLOAT32, (2, 3), FLOATS),
            tensors(net_pb2.DTYPE_FLOAT32, (3,), FLOATS),
            tensors(net_pb2.DTYPE_FLOAT32, (), FLOATS),
        ),
        max_size=5,
    ),
    INT64.filter(lambda v: v >= 0) | st.integers(0, 10),
)
def test_params_decode_and_check(given_tensors: dict[str, net_pb2.Tensor], version: int) -> None:
    msg = net_pb2.Params(version=version)
    for k, v in given_tensors.items():
        msg.tensors[k].CopyFrom(v)

    def call() -> dict[str, np.ndarray]:
        params = codec.params_from_proto(msg)
        validate.check_version(params.version)
        return validate.check_state("tensors", params.tensors, EXPECTED)

    state = only_net_errors(call)
    if state is not None:
        assert sorted(state) == sorted(EXPECTED)
        assert all(np.isfinite(v).all() for v in state.values())


@FUZZ
@given(
    st.builds(
        net_pb2.NetCfg,
        protocol_version=st.sampled_from([PROTOCOL_VERSION, 0, 99]),
        obs_dim=st.integers(-2, 2**31 - 1),
        head_sizes=st.lists(st.integers(-1, 6), max_size=4),
        hidden_sizes=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3),
        loss=st.integers(-1, 8),
        optim=st.builds(
            net_pb2.OptimCfg,
            kind=st.integers(-1, 6),
            lr=FLOATS,
            eps=FLOATS,
            momentum=FLOATS,
        ),
        clip=FLOATS,
        value_coef=FLOATS,
        entropy_coef=FLOATS,
        epochs=st.integers(-(2**31), 2**31 - 1),
        minibatches=st.integers(-(2**31), 2**31 - 1),
        max_grad_norm=FLOATS,
        activation=st.integers(-1, 4),
    )
)
def test_net_cfg_checks(cfg: net_pb2.NetCfg) -> None:
    only_net_errors(lambda: validate.check_net_cfg(cfg), (INVALID_ARGUMENT, FAILED_PRECONDITION))


@FUZZ
@given(st.integers(-(2**31), 2**31 - 1), INT64, st.none() | INT64, st.booleans())
def test_hidden_batch_and_steps(batch: int, step: int, last: int | None, known: bool) -> None:
    rows = only_net_errors(lambda: validate.check_hidden_batch(batch))
    assert rows is None or 1 <= rows <= validate.MAX_ROWS
    codes = (FAILED_PRECONDITION,)
    only_net_errors(lambda: validate.is_repeat(step, last, known), codes)
