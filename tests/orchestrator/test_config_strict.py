"""Config values are never coerced, and unknown names get the closest valid one."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from casi_orchestrator.config import GAME_KEYS, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.toml"))
HEAD = 'agents = ["learner", "honest"]\n'
GAME = "max_steps = 10\nattrs = { count = 4, direct = 2, goal = 1, values = 4 }\n"


def errors(tmp_path: Path, text: str) -> dict[str, str]:
    """{dotted key: message} of every error of a config text."""
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return dict(line.removeprefix(f"{path}: ").split(": ", 1) for line in err.value.lines)


def test_strings_and_wrong_types_are_refused_naming_key_type_and_value(tmp_path: Path) -> None:
    text = HEAD + 'max_steps = "10"\nend_on_first_win = "yes"\n'
    text += "attrs = { count = 4, direct = 2, goal = 1, values = 4.0 }\n"
    text += '[incentives]\nreward_win = "200"\n'
    text += '[algorithm]\nrecurrent = "yes"\nlr = "0.1"\nbatch = 8.0\nepochs = true\n'
    text += 'hidden_sizes = [16, "16"]\nclip_value = 1\n[eval]\ntarget_win_rate = true\n'
    found = errors(tmp_path, text)
    integer = "expected an integer, written without quotes or a decimal point"
    number, boolean = "expected a number, written without quotes", "expected true or false"
    assert found == {
        "max_steps": f"{integer}, not a string (got '10')",
        "end_on_first_win": f"{boolean}, written without quotes, not a string (got 'yes')",
        "attrs.values": f"{integer}, not a float (got 4.0)",
        "incentives.reward_win": f"{number}, not a string (got '200')",
        "algorithm.recurrent": f"{boolean}, written without quotes, not a string (got 'yes')",
        "algorithm.lr": f"{number}, not a string (got '0.1')",
        "algorithm.batch": f"{integer}, not a float (got 8.0)",
        "algorithm.epochs": f"{integer}, not a boolean (got true)",
        "algorithm.hidden_sizes.1": f"{integer}, not a string (got '16')",
        "algorithm.clip_value": f"{boolean}, written without quotes, not an integer (got 1)",
        "eval.target_win_rate": f"{number}, not a boolean (got true)",
    }


def test_agent_tables_and_top_level_keys_are_strict_too(tmp_path: Path) -> None:
    text = 'seed = "3"\nname = 7\nagents = ["learner", {kind = "honest", address = 5}]\n' + GAME
    assert errors(tmp_path, text) == {
        "seed": "expected an integer, written without quotes or a decimal point"
        ", not a string (got '3')",
        "name": "expected a string, in quotes, not an integer (got 7)",
        "agents.1.address": "expected a string, in quotes, not an integer (got 5)",
    }


def test_an_integer_is_a_fine_float_and_gives_the_same_run(tmp_path: Path) -> None:
    as_int = tmp_path / "i.toml"
    as_int.write_text(HEAD + GAME + "[algorithm]\nlr = 1\n[incentives]\nreward_win = 300\n")
    as_float = tmp_path / "f.toml"
    as_float.write_text(HEAD + GAME + "[algorithm]\nlr = 1.0\n[incentives]\nreward_win = 300.0\n")
    a, b = load_config(as_int), load_config(as_float)
    assert type(a.algorithm.lr) is float and a.algorithm.lr == 1.0
    assert a.game().incentives.reward_win == 300.0
    assert a.fingerprint() == b.fingerprint()


def _same(given: object, got: object) -> bool:
    """A value as TOML gave it and as loaded: equal, and an int only where a float is due."""
    if isinstance(given, dict):
        pick = got.get if isinstance(got, dict) else lambda k: getattr(got, k)
        return all(_same(v, pick(k)) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(got, list) and all(_same(a, b) for a, b in zip(given, got, strict=True))
    return given == got and type(got) in (type(given), float)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiments_load_every_value_as_written(path: Path) -> None:
    cfg = load_config(path)
    data = tomllib.loads(path.read_text())
    game = cfg.game()
    for key, value in data.items():
        if key == "agents":
            kinds = [a if isinstance(a, str) else a["kind"] for a in value]
            assert [a.kind for a in cfg.agent_specs] == kinds
        else:
            assert _same(value, getattr(game if key in GAME_KEYS else cfg, key)), key


def test_an_unknown_section_gets_the_closest_name_or_the_list(tmp_path: Path) -> None:
    text = HEAD + GAME + "[algoritm]\nlr = 0.1\n[zzz]\na = 1\n"
    assert errors(tmp_path, text) == {
        "algoritm": "unknown section; did you mean 'algorithm'?",
        "zzz": "unknown section; the sections are attrs, incentives, algorithm, bonus, "
        "backtracking, eval, log, checkpoint, learners, tune, curriculum (check its spelling)",
    }


def test_an_unknown_key_gets_the_closest_name_or_the_keys_of_its_table(tmp_path: Path) -> None:
    text = HEAD + GAME + "sed = 2\nfoo = 1\n[checkpoint]\nqqq = 1\n[incentives]\nrewrd_win = 1\n"
    found = errors(tmp_path, text)
    assert found["sed"] == "unknown key; did you mean 'seed'?"
    assert found["foo"] == (
        "unknown key; the keys are name, seed, agents, max_steps, init, end_on_first_win "
        "(check its spelling)"
    )
    assert found["checkpoint.qqq"] == "unknown key; the keys of [checkpoint] are every"
    assert found["incentives.rewrd_win"] == "unknown key; did you mean 'reward_win'?"
    assert len(found) == 4


def test_the_cli_refuses_a_quoted_number_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(HEAD + GAME.replace("10", '"10"') + '[algorithm]\nrecurrent = "yes"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "casi_orchestrator", "run", str(path), "--out", str(tmp_path),
         "--iterations", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: max_steps: expected an integer" in proc.stderr
    assert f"{path}: algorithm.recurrent: expected true or false" in proc.stderr
    assert "casi: 2 error(s) in the configuration" in proc.stderr
    assert not (tmp_path / "cfg").exists()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_resolved_config_a_trial_writes_loads_again_to_the_same_run(
    tmp_path: Path, path: Path
) -> None:
    cfg = load_config(path)
    written = tmp_path / "config.toml"
    written.write_text(tomli_w.dumps(cfg.resolved()))
    again = load_config(written)
    assert again.fingerprint() == cfg.fingerprint()
    assert again.resolved() == cfg.resolved()
