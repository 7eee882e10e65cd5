"""Loading run configs: defaults, agent names, --learner overrides, every error at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator.config import (
    ConfigError,
    load_config,
    parse_learner_flags,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.toml"))
GAME = "max_steps = 10\nattrs = { count = 4, direct = 2, goal = 1, values = 4 }\n"


def write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_shipped_experiment_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    original = ("exp0", "exp1", "exp2", "exp3", "exp4")  # the original study's game
    if path.stem.split("_")[0] in original:
        assert cfg.game().attrs.count == 4
    assert cfg.learning_agents


def test_good_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'agents = ["learner", "honest"]\n' + GAME, "mine.toml"))
    assert cfg.name == "mine"
    a = cfg.algorithm
    assert (a.loss, a.gamma, a.lam, a.batch, a.optimizer, a.lr, a.eps) == (
        "ppo", 0.99, 0.95, 256, "adam", 5e-4, 1e-5,
    )  # fmt: skip
    assert (a.epochs, a.minibatches, a.clip, a.value_coef, a.entropy_coef) == (4, 4, 0.2, 0.5, 0.01)
    assert (a.max_grad_norm, a.hidden_sizes, a.activation, a.reward_scale) == (
        0.5, [128, 128], "tanh", 0.01,
    )  # fmt: skip
    assert (cfg.bonus.kind, cfg.bonus.bits, cfg.bonus.beta) == ("simhash", 16, 0.05)
    on = {k for k, v in cfg.log.model_dump().items() if v}
    assert on == {"iteration_csv", "experiment_start", "learning", "tensorboard"}
    game = cfg.game()
    assert game.init == "random" and game.incentives.reward_win == 200
    assert cfg.resolved()["incentives"]["cost_ask_question"] == 2


def test_agents_are_named_by_position_unless_named(tmp_path: Path) -> None:
    text = 'agents = ["learner", {kind = "honest"}, {name = "bob", kind = "learner"}]\n' + GAME
    cfg = load_config(write(tmp_path, text))
    assert [a.name for a in cfg.agent_specs] == ["a0", "a1", "bob"]
    assert [(i, a.name) for i, a in cfg.learning_agents] == [(0, "a0"), (2, "bob")]


def test_duplicate_agent_names_are_refused(tmp_path: Path) -> None:
    text = 'agents = [{name = "x", kind = "learner"}, {name = "x", kind = "honest"}]\n' + GAME
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.lines == [
        f"{tmp_path / 'cfg.toml'}: agents: names must be unique, 'x' is used twice"
    ]


def test_learner_overrides_set_addresses_and_name_bad_targets(tmp_path: Path) -> None:
    path = write(tmp_path, 'agents = ["learner", "honest", "learner"]\n' + GAME)
    cfg = load_config(path, overrides={"a2": "10.0.0.5:7000"})
    assert [a.address for a in cfg.agent_specs] == [None, None, "10.0.0.5:7000"]
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides={"zz": "h:1", "a1": "h:2"})
    text = "\n".join(err.value.lines)
    assert "--learner zz=h:1: no agent named 'zz' (agents: a0, a1, a2)" in text
    assert "--learner a1=h:2: agent 'a1' is a scripted 'honest' agent, not a learner" in text


def test_learner_flags_parse() -> None:
    assert parse_learner_flags(["a0=127.0.0.1:5", "b=inprocess"]) == (
        {"a0": "127.0.0.1:5", "b": "inprocess"}, [],
    )  # fmt: skip
    _, errors = parse_learner_flags(["nohost", "=x:1"])
    assert len(errors) == 2 and "expected NAME=HOST:PORT" in errors[0]


BAD = """\
seed = 1
agents = ["learner", "hnest"]
max_steps = "ten"
attrs = { count = 4, direct = 2, goal = 3, values = 4 }

[algorithm]
lerning_rate = 0.1
gamma = 1.5
loss = "dqn"
batch = 0

[bonus]
kind = "minhash"
"""


def test_every_mistake_is_reported_at_once_with_dotted_keys(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = err.value.lines
    by_key = {line.split(": ")[1]: line for line in lines}
    assert set(by_key) >= {
        "agents.1.kind", "algorithm.lerning_rate", "algorithm.gamma", "algorithm.loss",
        "algorithm.batch", "bonus.kind", "max_steps", "attrs.goal",
    }  # fmt: skip
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "unknown key" in by_key["algorithm.lerning_rate"]
    assert "(got 1.5)" in by_key["algorithm.gamma"]
    assert "'ppo'" in by_key["algorithm.loss"] and "(got 'dqn')" in by_key["algorithm.loss"]
    assert "'simhash'" in by_key["bonus.kind"]
    assert "'honest'" in by_key["agents.1.kind"] and "(got 'hnest')" in by_key["agents.1.kind"]
    assert "(got 'ten')" in by_key["max_steps"]


def test_impossible_game_is_reported_with_its_key(tmp_path: Path) -> None:
    text = 'agents = ["learner", "honest"]\nmax_steps = 10\n'
    text += "attrs = { count = 4, direct = 2, goal = 2, values = 1 }\n[eval]\nevery = 0\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    text = "\n".join(err.value.lines)
    assert ": attrs.values: " in text
    assert ": eval.every: " in text


def test_unknown_keys_get_a_spelling_suggestion(tmp_path: Path) -> None:
    text = 'agents = ["learner", "honest"]\nmax_steps = 3\n'
    text += "attrs = { count = 4, direct = 2, goal = 1, values = 4, cont = 3 }\n"
    text += "[log]\nlearnng = true\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert sorted(line.split(": ", 1)[1] for line in err.value.lines) == [
        "attrs.cont: unknown key; did you mean 'count'?",
        "log.learnng: unknown key; did you mean 'learning'?",
    ]


def test_a_config_needs_a_learner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one agent must be of kind 'learner'"):
        validate_config({"agents": ["honest", "liar"], "max_steps": 3,
                         "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4}},
                        str(tmp_path / "x.toml"))  # fmt: skip


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'agents = ["learner", "honest"]\nmax_steps = = 3\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.lines) == 1
    assert "TOML syntax error" in err.value.lines[0] and "line 2" in err.value.lines[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casi_orchestrator", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_cli_prints_every_error_and_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    proc = run_cli("run", str(path), "--learner", "a9=127.0.0.1:1", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    for key in ("agents.1", "max_steps", "algorithm.lerning_rate", "algorithm.gamma",
                "algorithm.loss", "algorithm.batch", "bonus.kind", "--learner a9"):  # fmt: skip
        assert key in proc.stderr, key
    assert not (tmp_path / "cfg").exists()


def test_cli_toml_syntax_error_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "agents = [\n")
    proc = run_cli("run", str(path))
    assert proc.returncode == 2
    assert "TOML syntax error" in proc.stderr and "Traceback" not in proc.stderr


def test_target_win_rate_comes_from_the_file_or_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'agents = ["learner", "honest"]\n' + GAME + "[eval]\nevery = 2\n")
    assert load_config(path).eval.target_win_rate is None
    assert load_config(path, target_win_rate=0.9).eval.target_win_rate == 0.9
    with pytest.raises(ConfigError) as err:
        load_config(path, target_win_rate=1.5)
    assert any("eval.target_win_rate" in line for line in err.value.lines)
