"""Property-based fuzz of the config loader and the checkpoint reader: whatever the input,
the only exceptions are ConfigError (configs), CheckpointError and ResumeError (checkpoints).

The budget is CASI_FUZZ_EXAMPLES examples per property (default 60), e.g.
``CASI_FUZZ_EXAMPLES=5000 pytest tests/orchestrator/test_fuzz_loaders.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from casi_orchestrator.config import ConfigError, RunConfig, load_config, validate_config
from casi_orchestrator.resume import ResumeError, new_state, read_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_checkpoint_lies import reseal
from .test_trainer import config, run_trial

EXAMPLES = int(os.environ.get("CASI_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FILES = ("arrays.npz", "meta.json", "manifest.json")

SECTIONS = {
    "": ["name", "seed", "agents", "max_steps", "init", "end_on_first_win", "attrs", "incentives"],
    "algorithm": ["loss", "gamma", "batch", "lr", "clip", "max_grad_norm", "hidden_sizes",
                  "reward_scale", "epochs", "minibatches", "recurrent", "mask_pointless"],
    "bonus": ["kind", "bits", "beta", "decay_iterations"],
    "eval": ["every", "episodes", "sample", "target_win_rate"],
    "backtracking": ["enabled", "pop_limit", "metric"],
    "learners": ["rpc_timeout", "threads", "max_message_mb", "token_env", "tls_ca"],
    "attrs": ["count", "direct", "goal", "values"],
    "incentives": ["reward_win", "cost_ask_question", "prosocial", "max_guesses_per_attr"],
}  # fmt: skip
BASE = {
    "agents": ["learner", "honest"],
    "max_steps": 10,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["learner", "honest", "ppo", "simhash", "../x", "é" * 60, "a/b"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, int | str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()
                               if x is not None) + "}"  # fmt: skip
    return '""'


@st.composite
def changes(draw: st.DrawFn) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.sampled_from(SECTIONS[section]) | st.text(max_size=6))
        value = draw(values)
        if section:
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = value
        else:
            data[key] = value
    return data


def as_toml(data: dict[str, Any]) -> str:
    top = [
        f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    tables = [
        f"[{json.dumps(k)}]\n"
        + "\n".join(
            f"{json.dumps(a)} = {_toml_value(b)}" for a, b in v.items() if b is not None
        )  # fmt: skip
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top + tables) + "\n"


def only_config_errors(load: Any) -> None:
    try:
        cfg = load()
    except ConfigError as exc:
        assert exc.lines and all(isinstance(line, str) and line for line in exc.lines)
    else:
        assert isinstance(cfg, RunConfig)


@FUZZ
@given(data=changes())
def test_random_tables_give_a_config_or_config_errors(data: dict[str, Any]) -> None:
    only_config_errors(lambda: validate_config(data, "fuzz.toml"))


@FUZZ
@given(data=changes(), noise=st.binary(max_size=40), at=st.floats(0, 1))
def test_random_toml_text_gives_a_config_or_config_errors(
    tmp_path: Path, data: dict[str, Any], noise: bytes, at: float
) -> None:
    text = as_toml(data).encode()
    cut = int(at * len(text))
    path = tmp_path / "fuzz.toml"
    path.write_bytes(text[:cut] + noise + text[cut:])
    only_config_errors(lambda: load_config(path))


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def real_trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunConfig, Path]]:
    folder = tmp_path_factory.mktemp("fuzz-trial")
    cfg = config(
        folder, algorithm={"iterations": 3}, backtracking={"enabled": True}, eval={"every": 1}
    )
    run_trial(cfg, folder, {"a0": ScriptedNet("silent")})
    yield cfg, folder / "trial-0" / "checkpoint"


@pytest.fixture(scope="module")
def arrays_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-arrays") / "checkpoint"
    arrays = {
        "net/a0/tensors/w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "net/a0/version": np.array([3], np.int64),
        "bonus/a0/keys": np.array([1, 2**63 + 5], np.uint64),
        "flag": np.array(True),
        "empty": np.zeros((0, 5), np.float64),
    }
    write_checkpoint(path, arrays, {"iteration": 3})
    return path


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, bytes]], bool]:
    name = draw(st.sampled_from(FILES))
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "insert", "delete", "truncate"]),
                st.floats(0, 1),
                st.binary(min_size=1, max_size=8),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return name, [(kind, int(at * 1e9), data) for kind, at, data in edits], draw(st.booleans())


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, noise in edits:
        i = at % (len(out) + 1)
        if kind == "flip" and out:
            out[min(i, len(out) - 1)] ^= noise[0] or 1
        elif kind == "insert":
            out[i:i] = noise
        elif kind == "delete":
            del out[i : i + len(noise)]
        else:
            del out[i:]
    return bytes(out)


def damaged_copy(source: Path, work: Path, name: str, edits: Any, seal: bool) -> Path:
    path = work / "checkpoint"
    shutil.copytree(source, path)
    file = path / name
    file.write_bytes(mutate(file.read_bytes(), edits))
    if seal and name != "manifest.json":
        reseal(path)
    return path


@FUZZ
@given(change=mutations())
def test_mutated_checkpoints_give_arrays_or_a_checkpoint_error(
    arrays_checkpoint: Path, change: Any
) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = damaged_copy(arrays_checkpoint, Path(work), *change)
        try:
            read_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(name=st.sampled_from(FILES), noise=st.binary(max_size=600), seal=st.booleans())
def test_random_bytes_give_a_checkpoint_error(
    arrays_checkpoint: Path, name: str, noise: bytes, seal: bool
) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "checkpoint"
        shutil.copytree(arrays_checkpoint, path)
        (path / name).write_bytes(noise)
        if seal and name != "manifest.json":
            reseal(path)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)


@FUZZ
@given(change=mutations())
def test_mutated_trial_checkpoints_resume_or_give_a_resume_error(
    real_trial: tuple[RunConfig, Path], change: Any
) -> None:
    cfg, source = real_trial
    with tempfile.TemporaryDirectory() as work:
        path = damaged_copy(source, Path(work), *change)
        try:
            read_state(path, cfg, new_state(cfg, 0))
        except ResumeError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(key=st.sampled_from([
    "experiment", "trial", "iteration", "agent_steps", "wall_time", "csv_lines", "jsonl_lines",
    "fingerprint", "agents", "stopped", "last_eval", "finished", "final_eval", "continuation",
    "config",
    "new",
]), value=values, drop=st.booleans())  # fmt: skip
def test_forged_meta_fields_resume_or_give_a_resume_error(
    real_trial: tuple[RunConfig, Path], key: str, value: Any, drop: bool
) -> None:
    cfg, source = real_trial
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "checkpoint"
        shutil.copytree(source, path)
        description = json.loads((path / "meta.json").read_text())
        if drop:
            description["meta"].pop(key, None)
        else:
            description["meta"][key] = value
        (path / "meta.json").write_text(json.dumps(description))
        reseal(path)
        try:
            read_state(path, cfg, new_state(cfg, 0))
        except ResumeError as exc:
            assert str(path) in str(exc)
