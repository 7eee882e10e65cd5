"""Configs that lie or overreach: undecodable files, non-finite floats, names that leave --out,
sizes that cannot fit in memory, scales that overflow float32. All refused at load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator.config import (
    MAX_FILE_BYTES,
    MAX_NAME_BYTES,
    ConfigError,
    load_config,
    memory_estimate,
    run_folder,
    validate_config,
)
from casi_orchestrator.exits import EXIT_USAGE
from casi_orchestrator.runner import run_experiment
from casi_orchestrator.wire import net_cfg

GAME = (
    'agents = ["learner", "honest"]\nmax_steps = 10\n'
    "attrs = { count = 4, direct = 2, goal = 1, values = 4 }\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.lines


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "casi_orchestrator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_one_bad_byte_in_a_comment_exits_2_naming_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"# caf\xe9 au lait\n" + GAME.encode())
    proc = run_cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}: line 1: not UTF-8 text (byte 0xe9 at offset 5)" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_random_bytes_are_a_config_error(tmp_path: Path) -> None:
    lines = errors(write(tmp_path, bytes(range(256)) * 3))
    assert len(lines) == 1 and "not UTF-8 text" in lines[0]


def test_a_file_too_big_to_be_a_config_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, GAME + "#" * MAX_FILE_BYTES + "\n")
    assert errors(path) == [f"{path}: larger than {MAX_FILE_BYTES} bytes: not a config"]


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("algorithm", "max_grad_norm", "nan"),
        ("algorithm", "clip", "inf"),
        ("algorithm", "lr", "-inf"),
        ("algorithm", "reward_scale", "nan"),
        ("bonus", "beta", "inf"),
        ("eval", "target_win_rate", "nan"),
        ("learners", "rpc_timeout", "inf"),
        ("incentives", "reward_win", "nan"),
    ],
)
def test_non_finite_floats_are_refused_naming_the_key(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    path = write(tmp_path, f"{GAME}[{section}]\n{key} = {value}\n")
    assert errors(path) == [f"{path}: {section}.{key}: must be a finite number (got {value})"]


def test_non_finite_floats_in_a_dict_are_refused_too(tmp_path: Path) -> None:
    data = {"agents": ["learner", "honest"], "max_steps": 10, "algorithm": {"gamma": float("nan")}}
    with pytest.raises(ConfigError) as err:
        validate_config(data, "x.toml")
    assert "x.toml: algorithm.gamma: must be a finite number (got nan)" in err.value.lines


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", ".hidden", "a/b", "/tmp/x", "a\\b", "tab\there", "x" * (MAX_NAME_BYTES + 1),
     "é" * (MAX_NAME_BYTES // 2 + 1)],
)  # fmt: skip
def test_names_that_are_not_plain_folder_names_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"name = {name!r}\n".replace("'", '"') if "\\" not in name
                 else f"name = '{name}'\n")  # fmt: skip
    path.write_text(path.read_text() + GAME)
    lines = errors(path)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: name: "), lines


def test_a_name_of_the_limit_is_fine_and_the_stem_is_checked_too(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, f'name = "{"x" * MAX_NAME_BYTES}"\n' + GAME))
    assert cfg.name == "x" * MAX_NAME_BYTES
    hidden = write(tmp_path, GAME, ".hidden.toml")
    assert errors(hidden)[0].startswith(f"{hidden}: name: expected a plain folder name")


def test_over_long_agent_names_are_refused(tmp_path: Path) -> None:
    text = GAME.replace('"learner", "honest"', f'{{name = "{"a" * 65}"}}, "honest"')
    assert (
        "agents.0.name: String should have at most 64 characters"
        in errors(write(tmp_path, text))[0]
    )


def test_the_run_folder_never_leaves_out(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    assert run_folder(root, "exp") == root / "exp"
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(ConfigError, match="would not be a folder inside --out"):
            run_folder(root, bad)
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "linked").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="would not be a folder inside --out"):
        run_folder(root, "linked")
    cfg = load_config(write(tmp_path, 'name = "linked"\n' + GAME))
    assert run_experiment(cfg, root, 1, False) == EXIT_USAGE
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "text, key",
    [
        ("[eval]\nepisodes = 1000000000\n", "eval.episodes"),
        ("max_steps = 50\n[algorithm]\nbatch = 1000000\n", "algorithm.batch"),
        ("[algorithm]\nhidden_sizes = [10000000]\n", "algorithm.hidden_sizes"),
    ],
)
def test_runs_that_cannot_fit_in_memory_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = write(tmp_path, GAME.replace("max_steps = 10\n", "") + text)
    if "max_steps" not in text:
        path.write_text("max_steps = 10\n" + path.read_text())
    lines = errors(path)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {key}: the run would need about")
    assert "above the budget of 16 GiB (CASI_MEMORY_GB)" in lines[0]


def test_a_huge_world_is_refused_naming_attrs_count(tmp_path: Path) -> None:
    path = write(tmp_path, GAME.replace("count = 4", "count = 100000"))
    (line,) = errors(path)
    assert "the run would need about" in line and "attrs.count" in line


def test_the_memory_budget_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GAME)
    load_config(path)
    monkeypatch.setenv("CASI_MEMORY_GB", "0.0001")
    assert "above the budget of 0.0001 GiB" in errors(path)[0]
    monkeypatch.setenv("CASI_MEMORY_GB", "lots")
    assert errors(path) == ["CASI_MEMORY_GB='lots': expected a positive number of GiB"]


@pytest.mark.parametrize(
    "text", ["[algorithm]\nreward_scale = 1e30\n", "[incentives]\nreward_win = 1e30\n"]
)
def test_scales_that_overflow_the_losses_are_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, GAME + text)
    (line,) = errors(path)
    assert line.startswith(f"{path}: algorithm.reward_scale: an episode's scaled return")
    assert "would overflow float32" in line


@pytest.mark.parametrize(
    "algorithm", ["", "factored_main = true\n", "recurrent = true\nhidden_sizes = [24, 8]\n"]
)
def test_the_memory_estimate_counts_the_learners_own_model(tmp_path: Path, algorithm: str) -> None:
    pytest.importorskip("torch")
    from casi_learner.torch_net import TorchNet

    cfg = load_config(write(tmp_path, GAME + "[algorithm]\n" + algorithm))
    reply = TorchNet().init(net_cfg(cfg.algorithm, cfg.game(), seed=0))
    assert memory_estimate(cfg)["models"][0] == 16 * reply.n_params  # 4 copies of float32
