"""The scripted learner refuses what the torch learner refuses, with the same code and words."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_proto.api import Net
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError

pytest.importorskip("torch")
from casi_learner.torch_net import TorchNet  # noqa: E402

CONTRACT = NetContract()
Call = Callable[[Net], object]


def _obs(rows: int, value: float = 0.5) -> np.ndarray:
    return np.full((rows, CONTRACT.obs_dim), value, np.float32)


def _batch(**changes: float) -> object:
    batch = CONTRACT.make_blank_sequences()
    return batch._replace(**{k: np.full_like(batch.mask, v) for k, v in changes.items()})


BAD: dict[str, tuple[bool, Call]] = {
    "NaN observations": (False, lambda net: net.predict(_obs(2, np.nan))),
    "infinite observations": (False, lambda net: net.predict(_obs(2, np.inf))),
    "no rows": (False, lambda net: net.predict(_obs(0))),
    "a mask of 7": (False, lambda net: net.train(1, _batch(mask=7.0))),
    "NaN returns": (False, lambda net: net.train(1, _batch(returns=np.nan))),
    "batch 0": (False, lambda net: net.init_hidden(0)),
    "batch 20,000,000": (False, lambda net: net.init_hidden(20_000_000)),
    "recurrent Predict before InitHidden": (True, lambda net: net.predict(_obs(2))),
    "recurrent Predict with other rows": (
        True,
        lambda net: (net.init_hidden(3), net.predict(_obs(2))),
    ),
}


def _outcome(net: Net, recurrent: bool, call: Call) -> tuple[str, str] | None:
    net.init(CONTRACT.make_cfg(recurrent=recurrent))
    try:
        call(net)
    except NetError as exc:
        return exc.code, exc.message
    return None


@pytest.mark.parametrize("case", BAD)
def test_scripted_refuses_like_torch(case: str) -> None:
    recurrent, call = BAD[case]
    torch_says = _outcome(TorchNet("cpu", threads=1), recurrent, call)
    assert torch_says is not None, f"{case}: the torch learner accepts it"
    assert _outcome(ScriptedNet("honest"), recurrent, call) == torch_says


def test_step_zero_is_accepted_by_both_after_init() -> None:
    for net in (TorchNet("cpu", threads=1), ScriptedNet("honest")):
        net.init(CONTRACT.make_cfg())
        net.train(0, CONTRACT.make_blank_sequences())
        assert net.get_params().version == 0
