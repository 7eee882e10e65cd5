"""Numba flags for every kernel of the simulator, in one place.

``cache``: compiled code is stored beside the sources (or in ``NUMBA_CACHE_DIR``) and loaded
by later processes. It is recompiled when ``kernel.py`` changes, not when a constant it
imports from ``actions.py`` or ``rng.py`` does, and a renamed named tuple of ``kernel.py``
makes the old cache fail to load: after either, delete ``__pycache__/kernel.*.nb[ci]``.
``nogil``: a caller may step several simulators from threads.
``_nrt=False``: the kernels allocate nothing (every array, scratch included, comes from the
caller), so numba's reference counting, whose atomic increments once took two thirds of the
step time, is switched off. ``error_model="numpy"``: no exception checks on integer division.
``inline="always"`` for the per-episode helpers: one flat loop for LLVM to optimise.
No ``parallel``: one core per simulator; no ``fastmath``: the logic is integer.
"""

from collections.abc import Callable
from typing import Any

from numba import njit

FLAGS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy", "_nrt": False}

jit: Callable[[Callable[..., Any]], Any] = njit(**FLAGS)
"""For the kernels called from Python and the functions the tests call."""
jit_inline: Callable[[Callable[..., Any]], Any] = njit(**FLAGS, inline="always")
"""For the per-episode helpers of the step."""
