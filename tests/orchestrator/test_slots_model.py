"""``[algorithm] model = "slots"``: the NetCfg it sends, the configs it refuses, a learner that
does not build it refused, runs of the mlp unchanged, and the exp5 world learned with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from casi.v1 import net_pb2
from casi_learner.scripted import ScriptedNet
from casi_orchestrator import wire
from casi_orchestrator.config import ConfigError, validate_config
from casi_orchestrator.runner import run_experiment
from casi_proto.errors import NetError
from rich.console import Console

from .test_trainer import config, run_trial

ROOT = Path(__file__).resolve().parents[2]


def test_the_netcfg_asks_for_the_slot_model_with_the_games_sizes(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"model": "slots"})
    sent = wire.net_cfg(cfg.algorithm, cfg.game(), seed=1)
    game = cfg.game()
    assert sent.model == net_pb2.MODEL_SLOTS
    assert (sent.game.attrs, sent.game.values, sent.game.agents) == (
        game.attrs.count,
        game.attrs.values,
        game.n_agents,
    )
    plain = wire.net_cfg(config(tmp_path).algorithm, game, seed=1)
    assert plain.model == net_pb2.MODEL_MLP and not plain.HasField("game")


@pytest.mark.parametrize("other", ["recurrent", "factored_main"])
def test_the_slot_model_with_an_lstm_or_factored_heads_is_refused(
    tmp_path: Path, other: str
) -> None:
    with pytest.raises(ConfigError, match=f'model = "slots" and {other} do not go together'):
        config(tmp_path, algorithm={"model": "slots", other: True})


def test_the_default_model_leaves_the_fingerprint_as_it_was(tmp_path: Path) -> None:
    # runs from before the key existed resume: "mlp" is not written, "slots" is
    plain, mlp = config(tmp_path), config(tmp_path, algorithm={"model": "mlp"})
    slots = config(tmp_path, algorithm={"model": "slots"})
    assert plain.fingerprint() == mlp.fingerprint() != slots.fingerprint()
    assert "model" not in plain.resolved()["algorithm"]
    assert slots.resolved()["algorithm"]["model"] == "slots"


def test_a_learner_that_does_not_build_the_slot_model_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"model": "slots"})
    words = r"learner a0 .* built MODEL_MLP, not the MODEL_SLOTS that \[algorithm\] model"
    with pytest.raises(NetError, match=words) as refused:
        run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    assert refused.value.code == "FAILED_PRECONDITION"


def test_a_run_trains_the_slot_model(tmp_path: Path) -> None:
    torch_net = pytest.importorskip("casi_learner.torch_net")
    cfg = config(tmp_path, algorithm={"model": "slots", "mask_pointless": True})
    result, rows = run_trial(cfg, tmp_path, {"a0": torch_net.TorchNet(device="cpu", threads=1)})
    assert result.iteration == 4 and all(float(r["a0.entropy"]) > 0 for r in rows)


@pytest.mark.expensive
def test_the_slot_model_wins_exp5s_world_within_forty_thousand_agent_steps(
    tmp_path: Path,
) -> None:
    # exp5 itself (the mlp) needs 0.58-0.63M agent-steps for 0.9 (docs/learning.md)
    pytest.importorskip("casi_learner.torch_net")
    data = tomllib.loads((ROOT / "experiments" / "exp5_big_honest.toml").read_text())
    data["algorithm"].update(model="slots", iterations=10)
    data["log"] = {"tensorboard": False}
    cfg = validate_config(data, str(tmp_path / "exp5_slots.toml"))
    assert run_experiment(cfg, tmp_path, 1, False, console=Console(quiet=True)) == 0
    rows = (tmp_path / cfg.name / "trial-0" / "iterations.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
    assert int(last["agent_steps"]) < 40_000 and float(last["a0.win_rate"]) >= 0.9, last
