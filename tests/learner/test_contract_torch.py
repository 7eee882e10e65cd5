"""The Net contract suite against a real gRPC server for TorchNet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from casi_learner.server import serving
from casi_proto.compliance import NetContract

pytest.importorskip("torch")
from casi_learner.torch_net import TorchNet  # noqa: E402


class TestTorchNet(NetContract):
    trainable = True
    has_params = True

    @pytest.fixture
    def address(self) -> Iterator[str]:
        with serving(TorchNet("cpu", threads=1)) as address:
            yield address
