"""Nothing in the source tree can unpickle: no pickle, no torch.load without weights_only=True,
no np.load without allow_pickle=False."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from .conftest import ROOT

SKIP_DIRS = {".venv", ".git", "build", "node_modules", "__pycache__"}
# modules whose loaders execute code found in the data
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
NUMPY = {"np", "numpy"}


def python_files() -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        out += [Path(folder, f) for f in files if f.endswith(".py") and "_pb2" not in f]
    return out


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for imported in [module, *names]:
                if imported and imported.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{where}: imports {imported}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else ""
        attr = node.func.attr
        if owner_name == "torch" and attr == "load":
            if not _is_const(_keyword(node, "weights_only"), True):
                found.append(f"{where}: torch.load without weights_only=True")
        if owner_name in NUMPY and attr == "load":
            if not _is_const(_keyword(node, "allow_pickle"), False):
                found.append(f"{where}: np.load without allow_pickle=False")
        if attr in ("read_array", "write_array") and not _is_const(
            _keyword(node, "allow_pickle"), False
        ):
            found.append(f"{where}: np.lib.format.{attr} without allow_pickle=False")
        if _is_const(_keyword(node, "allow_pickle"), True):
            found.append(f"{where}: allow_pickle=True")
    return found


def test_nothing_in_the_source_tree_can_unpickle() -> None:
    files = python_files()
    assert any(p.name == "checkpoint.py" for p in files)  # the scan sees the code
    found = [line for path in files for line in problems(path)]
    assert not found, "\n".join(found)


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "unsafe.py"
    bad.write_text(
        "import pickle\n"
        "import numpy as np\n"
        "import torch\n"
        "torch.load('m.pt')\n"
        "np.load('a.npy')\n"
        "np.load('a.npz', allow_pickle=True)\n"
        "torch.load('m.pt', weights_only=True)\n"
        "np.load('a.npz', allow_pickle=False)\n"
    )
    found = problems(bad)
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports pickle",
        "torch.load without weights_only=True",
        "np.load without allow_pickle=False",
        "np.load without allow_pickle=False",
        "allow_pickle=True",
    ]
