"""The small pieces the training loop calls: the CSV row, the log streams' switches, the
checkpoint's Params naming and when a snapshot is behind the disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from casi_orchestrator.checkpoint import params_arrays, read_params
from casi_orchestrator.config import LogCfg, validate_config
from casi_orchestrator.evaluation import EvalResult
from casi_orchestrator.logs import Streams, csv_row
from casi_orchestrator.metrics import csv_columns
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.resume import Checkpoints, new_state, snapshot
from casi_proto.api import Params

GAME = {
    "agents": ["learner", "honest"],
    "max_steps": 10,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4},
}


def params(version: int) -> Params:
    return Params(
        tensors={"trunk.0.weight": np.full((2, 3), float(version), np.float32)},
        optimizer={"state/0/step": np.array([version], np.float32)},
        version=version,
    )


def test_params_arrays_name_every_tensor_under_the_prefix_and_read_back() -> None:
    arrays = params_arrays(params(7), "net/a0/")
    assert sorted(arrays) == [
        "net/a0/optimizer/state/0/step",
        "net/a0/tensors/trunk.0.weight",
        "net/a0/version",
    ]
    back = read_params({**arrays, "net/a01/version": np.array([1])}, "net/a0/")
    assert back.version == 7 and list(back.tensors) == ["trunk.0.weight"]
    np.testing.assert_array_equal(back.tensors["trunk.0.weight"], np.full((2, 3), 7.0))


def test_csv_row_fills_eval_columns_only_when_there_was_an_evaluation() -> None:
    losses = {"a0": {"policy_loss": 0.5}}
    row = csv_row(3, 120, None, {}, losses, {"a0": 0.25})
    assert row == {"iteration": 3, "agent_steps": 120, "a0.policy_loss": 0.5, "a0.bonus": 0.25}
    result = EvalResult({"a0": {"win_rate": 1.0}}, {"a0": [0.0, 1.0]})
    row = csv_row(4, 160, result, {"a0": "push"}, {}, {"a0": 0.0})
    assert row["a0.win_rate"] == 1.0 and row["a0.event"] == "push"
    assert set(row) <= set(csv_columns(["a0"]))


def _events(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def test_learner_events_follow_the_learning_switch(tmp_path: Path) -> None:
    cfg = validate_config(GAME, "t.toml")
    for learning in (True, False):
        folder = tmp_path / str(learning)
        out = TrialOutput(folder, ["a0"])
        out.open()
        streams = Streams(out, LogCfg(learning=learning), cfg.game())
        streams.learner(5, "learner_restarted", "a0", "127.0.0.1:1")
        out.close()
        expected = [("learner_restarted", 5)] if learning else []
        assert [(e["event"], e["iteration"]) for e in _events(folder)] == expected


def test_a_snapshot_is_behind_until_written(tmp_path: Path) -> None:
    cfg = validate_config(GAME, "t.toml")
    state = new_state(cfg, trial=0)
    checkpoints = Checkpoints(tmp_path)
    assert not checkpoints.behind
    checkpoints.remember(snapshot(cfg, 0, state, {"a0": params(1)}, (1, 0), 0.0))
    assert checkpoints.behind
    checkpoints.write()
    assert not checkpoints.behind and checkpoints.written == 0
    state.iteration = 1
    checkpoints.remember(snapshot(cfg, 0, state, {"a0": params(2)}, (2, 1), 1.0))
    assert checkpoints.behind
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())["meta"]
    assert meta["iteration"] == 0 and meta["finished"] is False


def test_bonus_decays_linearly_to_zero_over_decay_iterations() -> None:
    from casi_orchestrator.config import BonusCfg

    assert [BonusCfg().scale(it) for it in (1, 500, 10**6)] == [1.0, 1.0, 1.0]
    cfg = BonusCfg(decay_iterations=4)
    assert [cfg.scale(it) for it in range(1, 7)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]


def test_training_batch_scales_only_the_bonus() -> None:
    from casi_orchestrator.bonus import CountBonus
    from casi_orchestrator.config import AlgorithmCfg
    from casi_orchestrator.rollout import RolloutBuffer
    from casi_orchestrator.update import training_batch

    roll = RolloutBuffer.zeros(1, 2, 3, 4, [3, 2], masked=False)
    roll.mask[:] = 1.0
    roll.rewards[0, :, 2] = 100.0
    roll.obs[0] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    alg = AlgorithmCfg(gamma=1.0, lam=1.0)
    full, full_mean = training_batch(roll, 0, CountBonus("simhash", 4, beta=0.4, seed=1), alg)
    half, half_mean = training_batch(roll, 0, CountBonus("simhash", 4, beta=0.4, seed=1), alg, 0.5)
    assert half_mean == full_mean / 2 and full_mean > 0
    # returns = scaled game reward + bonus, summed to the end (gamma = lambda = 1, values 0)
    game = np.array([1.0, 1.0, 1.0], np.float32)
    np.testing.assert_allclose(half.returns - game, (full.returns - game) / 2, rtol=1e-6)
