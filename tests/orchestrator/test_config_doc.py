"""docs/config.md is the config reference the models print, and it lists every key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator import config as c
from casi_orchestrator.config_doc import FLAGS, render
from casi_sim.config import Attrs, Incentives
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "config.md"


def test_the_committed_reference_is_what_the_models_print() -> None:
    assert COMMITTED.read_text() == render(), (
        "docs/config.md is out of date: run `make docs` and commit it"
    )


def test_the_module_prints_the_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "casi_orchestrator.config_doc"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render()


def _section_text(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


SECTIONS = [(f"`[{name}]`", c.RunConfig.model_fields[name].annotation) for name in c.SECTIONS]
SECTIONS += [("`[attrs]`", Attrs), ("`[incentives]`", Incentives)]


@pytest.mark.parametrize(("title", "model"), SECTIONS, ids=lambda v: str(v).strip("`[]"))
def test_every_key_has_a_row_with_its_docstring_and_default(
    title: str, model: type[BaseModel]
) -> None:
    text = _section_text(render(), title)
    for key, field in model.model_fields.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert " ".join(str(field.description).split()).replace("``", "`") in row, key
        if not field.is_required() and isinstance(field.default, bool):
            assert f"`{str(field.default).lower()}`" in row, key


def test_a_row_shows_type_default_range_and_validator_text() -> None:
    text = render()
    assert "| `gamma` | number | `0.99` | >= 0.0; <= 1.0 | Discount factor. |" in text
    assert "| `seed` | integer | `0` | >= 0; < 2^63 |" in text
    assert '| `loss` | one of `"ppo"`, `"a2c"`, `"reinforce"`, `"reinforce_baseline"` |' in text
    assert (
        "| `hidden_sizes` | list of integers | `[128, 128]` | at least 1 entry; every width" in text
    )
    assert "| `target_win_rate` | number | *unset* | > 0.0; <= 1.0 |" in text
    assert "| `max_steps` | integer | required | >= 1 |" in text


def test_the_command_line_options_named_exist() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "casi_orchestrator", "run", "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    for key, flag in FLAGS.items():
        assert flag.split()[0] in proc.stdout, key
        assert f"Command line: `{flag}`." in render()


def test_the_tune_docstring_names_every_mutable_key() -> None:
    from casi_orchestrator.config import MUTABLE_KEYS, TuneCfg

    validator = TuneCfg.__pydantic_decorators__.field_validators["_mutable"]
    doc = " ".join((validator.func.__doc__ or "").split())
    for section, keys in MUTABLE_KEYS.items():
        assert section in doc
        for key in keys:
            assert key in doc, key
