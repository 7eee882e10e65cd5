"""The committed generated code equals a fresh generation from net.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ("net_pb2.py", "net_pb2.pyi", "net_pb2_grpc.py")


def test_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "casi_proto.generate", str(tmp_path)], check=True, timeout=120
    )
    for name in FILES:
        committed = (ROOT / "proto/casi/v1" / name).read_bytes()
        fresh = (tmp_path / "casi/v1" / name).read_bytes()
        if committed != fresh:
            pytest.fail(f"proto/casi/v1/{name} is stale: run `make proto` and commit the result")


def test_every_proto_field_has_a_comment() -> None:
    lines = (ROOT / "proto/casi/v1/net.proto").read_text().splitlines()
    for i, line in enumerate(lines):
        text = line.strip()
        is_field = text.endswith(";") and "=" in text and not text.startswith(("syntax", "//"))
        if is_field or text.startswith(("rpc ", "message ", "enum ", "service ")):
            assert lines[i - 1].strip().startswith("//"), f"net.proto:{i + 1} has no comment"
