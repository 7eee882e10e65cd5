"""Requests that claim more than they carry, or more than the documented limits, against real
learners over gRPC: INVALID_ARGUMENT naming the field and the limit, never INTERNAL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2
from casi_learner.scripted import ScriptedNet
from casi_learner.server import serving
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.compliance.base import assert_params_equal, call_raw, expect_error
from casi_proto.errors import INVALID_ARGUMENT
from casi_proto.validate import MAX_ROWS

from ..conftest import LearnerProcess

pytest.importorskip("torch")
from casi_learner.torch_net import TorchNet  # noqa: E402

CONTRACT = NetContract()


@pytest.fixture(scope="module", params=["torch", "scripted"])
def server(request: pytest.FixtureRequest) -> Iterator[grpc.Channel]:
    net = TorchNet("cpu", threads=1) if request.param == "torch" else ScriptedNet("honest")
    with serving(net) as address, grpc.insecure_channel(address) as channel:
        yield channel


@pytest.fixture
def channel(server: grpc.Channel) -> grpc.Channel:
    call_raw(server, "Init", CONTRACT.make_cfg())
    return server


def _obs(shape: list[int], data: bytes = b"") -> net_pb2.Observations:
    return net_pb2.Observations(
        obs=net_pb2.Tensor(dtype=net_pb2.DTYPE_FLOAT32, shape=shape, data=data)
    )


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ([0, 2**62], "at most 2147483648 elements"),
        ([2**62, 10], "0 bytes for float32"),
        ([1] * 65, "at most 8 dimensions"),
        ([1] * 9, "at most 8 dimensions"),
    ],
)
def test_predict_shape_lies_are_invalid_argument(
    channel: grpc.Channel, shape: list[int], words: str
) -> None:
    expect_error(INVALID_ARGUMENT, lambda: call_raw(channel, "Predict", _obs(shape)), "obs", words)
    # and the learner still answers
    assert call_raw(channel, "Predict", _obs([2, 10], bytes(80))).values.shape == [2]


def test_huge_init_hidden_is_invalid_argument_naming_the_limit(server: grpc.Channel) -> None:
    call_raw(server, "Init", CONTRACT.make_cfg(recurrent=True))
    huge = net_pb2.HiddenCfg(batch=20_000_000)
    expect_error(
        INVALID_ARGUMENT,
        lambda: call_raw(server, "InitHidden", huge),
        "HiddenCfg.batch",
        f"at most {MAX_ROWS}",
    )
    call_raw(server, "InitHidden", net_pb2.HiddenCfg(batch=2))
    assert call_raw(server, "Predict", _obs([2, 10], bytes(80))).values.shape == [2]


@pytest.mark.expensive  # a casi-learner subprocess per case
@pytest.mark.parametrize(
    ("flags", "limit"),
    [(("--max-params", "1000"), 1000), (("--max-message-mb", "1"), 2**20 // 16)],
)
def test_casi_learner_max_params(
    learners: Callable[..., LearnerProcess], flags: tuple[str, ...], limit: int
) -> None:
    learner = learners(*flags)
    with grpc.insecure_channel(learner.address) as channel:
        big = CONTRACT.make_cfg(hidden_sizes=[limit // 20])  # about 30 parameters per unit
        expect_error(
            INVALID_ARGUMENT,
            lambda: call_raw(channel, "Init", big),
            f"NetCfg.hidden_sizes: [{limit // 20}] make a model",
            f"limit of {limit}",
        )
        small = CONTRACT.make_cfg(hidden_sizes=[limit // 40])
        assert 0 < call_raw(channel, "Init", small).n_params <= limit


def test_train_with_extreme_inputs_is_refused_and_leaves_the_model_as_it_was() -> None:
    with serving(TorchNet("cpu", threads=1)) as address, NetClient(address) as client:
        client.init(CONTRACT.make_cfg())
        batch = CONTRACT.make_sequences(client)
        client.train(1, batch)
        before = client.get_params()
        returns = np.where(np.arange(batch.returns.size) % 2, 3e38, -3e38).astype(np.float32)
        poison = batch._replace(returns=returns.reshape(batch.returns.shape))
        err = expect_error(
            INVALID_ARGUMENT, lambda: client.train(2, poison), "Train step 2", "non-finite"
        )
        assert "|returns| = 3e+38" in err.message
        assert_params_equal(before, client.get_params())
        client.set_params(before)  # what recovery does: the parameters are still acceptable
