"""Regenerate the Python code of the contract: ``python -m casi_proto.generate OUT_ROOT``.

``OUT_ROOT`` receives ``casi/v1/net_pb2.py``, ``net_pb2.pyi`` and ``net_pb2_grpc.py``.
The committed code in ``proto/`` is produced by ``make proto``; a test generates
into a temporary folder and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent
PROTO_FILE = "casi/v1/net.proto"


def generate(out_root: Path) -> None:
    from grpc_tools import protoc

    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        PROTO_FILE,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_ROOT / PROTO_FILE}")


if __name__ == "__main__":
    generate(Path(sys.argv[1] if len(sys.argv) > 1 else PROTO_ROOT))
