"""Contract tests of Train (idempotent by its step) and ResetOptimizer."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from casi.v1 import net_pb2

from casi_proto import codec
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.client import NetClient
from casi_proto.compliance.base import ContractBase, RawCall, assert_params_equal, expect_error
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NetError
from casi_proto.heads import head_slices


def _train(raw: RawCall, step: int, batch: Sequences) -> None:
    raw("Train", codec.sequences_to_proto(step, batch))


class TrainContract(ContractBase):
    """One update per new step; a retried step changes nothing; bad batches change nothing."""

    def test_train_returns_finite_losses(self, ready: NetClient) -> None:
        before = ready.get_params()
        stats = ready.train(1, self.make_sequences(ready))
        assert sorted(stats) == sorted(LOSS_FIELDS)
        assert all(np.isfinite(v) for v in stats.values()), stats
        after = ready.get_params()
        assert after.version == 1
        if self.trainable:
            changed = [
                k for k in before.tensors if not np.array_equal(before.tensors[k], after.tensors[k])
            ]
            assert changed, "Train changed no parameter"

    def test_train_retry_returns_the_same_loss_and_changes_nothing(self, ready: NetClient) -> None:
        batch = self.make_sequences(ready)
        first = ready.train(1, batch)
        params = ready.get_params()
        assert ready.train(1, batch) == first
        assert_params_equal(ready.get_params(), params)
        second = ready.train(2, self.make_sequences(ready, seed=1))
        assert ready.get_params().version == 2
        assert ready.train(2, batch) == second

    def test_train_older_step_refused(self, ready: NetClient, raw: RawCall) -> None:
        ready.train(1, self.make_sequences(ready))
        ready.train(2, self.make_sequences(ready, seed=1))
        params = ready.get_params()
        older = self.make_sequences(ready, seed=2)
        with pytest.raises(NetError) as info:
            _train(raw, 1, older)
        assert info.value.code in (FAILED_PRECONDITION, INVALID_ARGUMENT), str(info.value)
        assert_params_equal(ready.get_params(), params)

    def test_train_bad_shapes(self, ready: NetClient, raw: RawCall) -> None:
        good = self.make_sequences(ready)
        b, t = good.mask.shape
        cases = {
            "actions": good._replace(actions=good.actions[:, :, :-1].copy()),
            "mask": good._replace(mask=np.ones((b, t + 1), np.float32)),
            "advantages": good._replace(advantages=good.advantages.astype(np.float64)),
            "obs": good._replace(obs=np.zeros((b, t, self.obs_dim + 1), np.float32)),
        }
        for field, batch in cases.items():
            expect_error(INVALID_ARGUMENT, partial(_train, raw, 1, batch), field)
        out_of_range = good.actions.copy()
        out_of_range[0, 0, 0] = self.head_sizes[0]
        bad = good._replace(actions=out_of_range)
        expect_error(INVALID_ARGUMENT, lambda: _train(raw, 1, bad), "actions")
        assert ready.get_params().version == 0
        ready.train(1, good)

    def need_masking(self, client: NetClient) -> None:
        """Skips a test of Sequences.action_mask on a server that does not claim it."""
        if not client.init(self.make_cfg()).action_mask:
            pytest.skip("this implementation does not honour Sequences.action_mask")

    def test_train_action_mask_gives_the_masked_policy(self, ready: NetClient) -> None:
        """Only the sampled action allowed in every head: the masked policy has entropy 0."""
        self.need_masking(ready)
        batch = self.make_sequences(ready)
        allowed = np.zeros((*batch.mask.shape, sum(self.head_sizes)), np.float32)
        for h, cols in enumerate(head_slices(self.head_sizes)):
            np.put_along_axis(allowed[..., cols], batch.actions[..., h : h + 1], 1.0, axis=-1)
        stats = ready.train(1, batch._replace(action_mask=allowed))
        if self.trainable:
            assert stats["entropy"] == pytest.approx(0.0, abs=1e-6), stats

    def test_train_all_ones_action_mask_changes_nothing(self, ready: NetClient) -> None:
        self.need_masking(ready)
        batch = self.make_sequences(ready)
        before = ready.get_params()
        plain = ready.train(1, batch)
        after = ready.get_params()
        ready.set_params(before)
        ones = np.ones((*batch.mask.shape, sum(self.head_sizes)), np.float32)
        masked = ready.train(1, batch._replace(action_mask=ones))
        assert masked == pytest.approx(plain, rel=1e-5, abs=1e-6)
        for name, x in ready.get_params().tensors.items():
            np.testing.assert_allclose(x, after.tensors[name], rtol=1e-5, atol=1e-6)

    def test_train_bad_action_mask(self, ready: NetClient, raw: RawCall) -> None:
        self.need_masking(ready)
        good = self.make_sequences(ready)
        b, t = good.mask.shape
        width = sum(self.head_sizes)
        taken_masked = np.ones((b, t, width), np.float32)
        taken_masked[0, 0, good.actions[0, 0, 0]] = 0.0
        empty_head = np.ones((b, t, width), np.float32)
        empty_head[1, 2, : self.head_sizes[0]] = 0.0
        cases: dict[str, np.ndarray] = {
            "shape": np.ones((b, t, width + 1), np.float32),
            "dtype": np.ones((b, t, width), np.float64),
            "not 0/1": np.full((b, t, width), 0.5, np.float32),
            "sampled action masked": taken_masked,
            "head allows nothing": empty_head,
        }
        for allowed in cases.values():
            bad = good._replace(action_mask=allowed)
            expect_error(INVALID_ARGUMENT, partial(_train, raw, 1, bad), "action_mask")
        assert ready.get_params().version == 0

    def test_reset_optimizer(self, ready: NetClient, raw: RawCall) -> None:
        ready.train(1, self.make_sequences(ready))
        before = ready.get_params()
        ready.reset_optimizer(self.make_cfg().optim)
        assert_params_equal(
            Params(ready.get_params().tensors, {}, 0), Params(before.tensors, {}, 0)
        )
        bad = net_pb2.OptimCfg(kind=net_pb2.OPTIM_UNSPECIFIED, lr=1e-3)
        expect_error(INVALID_ARGUMENT, lambda: raw("ResetOptimizer", bad), "kind")
        ready.train(2, self.make_sequences(ready, seed=1))
