"""casi_proto.heads: head column ranges and a stable log-softmax."""

from __future__ import annotations

import math

import numpy as np
from casi_proto.heads import head_slices, log_softmax


def test_head_slices_cover_the_logits_in_order() -> None:
    assert head_slices([9, 5, 5]) == [slice(0, 9), slice(9, 14), slice(14, 19)]
    assert head_slices([]) == []


def test_log_softmax_matches_the_formula_row_by_row() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    got = log_softmax(x)
    assert got.dtype == np.float64
    for row, out in zip(x.tolist(), got, strict=True):
        norm = math.log(sum(math.exp(v) for v in row))
        np.testing.assert_allclose(out, [v - norm for v in row], rtol=1e-12)


def test_log_softmax_is_stable_for_large_logits() -> None:
    got = log_softmax(np.array([1000.0, 0.0, -1000.0]))
    assert np.isfinite(got[:2]).all() and got[0] == 0.0 and got[1] == -1000.0
