"""Arithmetic of the concatenated action heads of ``Predictions.logits`` (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def head_slices(head_sizes: Sequence[int]) -> list[slice]:
    """The column range of every head inside the concatenated logits."""
    ends = np.cumsum(head_sizes)
    return [slice(int(e - n), int(e)) for n, e in zip(head_sizes, ends, strict=True)]


def log_softmax(x: npt.ArrayLike) -> np.ndarray:
    """Row-wise (last axis) log-softmax, in float64."""
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]
