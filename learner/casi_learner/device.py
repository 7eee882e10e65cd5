"""Choosing the torch device a learner runs on."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """``"auto"`` picks ``"cuda"`` when a CUDA device is available, else ``"cpu"``.

    ``"cuda"`` (or ``"cuda:N"``) without a usable CUDA device raises ``ValueError``.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {name!r} was asked for but this torch build "
                f"({torch.__version__}) sees no CUDA device; use 'cpu' or 'auto'"
            )
        if name != "cuda":
            index = name.removeprefix("cuda:")
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ValueError(
                    f"device: expected cuda:0..cuda:{torch.cuda.device_count() - 1}, got {name!r}"
                )
        return name
    raise ValueError(f"device: expected one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
