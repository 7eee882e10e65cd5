"""``casi --version``: the versions of the CASI distributions installed."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from typing import Any

DISTRIBUTIONS = ("casi-orchestrator", "casi-sim", "casi-proto", "casi-learner")


def versions_text() -> str:
    """One line per distribution (``not installed`` if missing), then Python's version."""
    lines = []
    for name in DISTRIBUTIONS:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    lines.append(f"Python {platform.python_version()}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """``--version``: prints :func:`versions_text` as it is (argparse's own re-wraps it)."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        kw.setdefault("help", "print the versions of the CASI packages and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(versions_text())
        parser.exit()
