"""``[algorithm] factored_main``: the main action as kind / attribute / agent / value heads,
composed into the simulator's layout, with only the heads the kind uses in the log-probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from casi.v1.net_pb2 import NetCfg
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.config import AlgorithmCfg, ConfigError, LearnersCfg, load_config
from casi_orchestrator.factored import (
    KIND_ASK,
    KIND_GUESS,
    KIND_NOOP,
    FactoredHeads,
    compose,
    main_probs,
    relevance_mask,
    split_probs,
    with_relevance,
)
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.rollout import collect, joint_action
from casi_orchestrator.sampling import head_probs, masked, sample_heads
from casi_orchestrator.update import training_batch
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from casi_proto.heads import head_slices, log_softmax
from casi_sim import BatchSim, GameConfig
from casi_sim.actions import DO_ASK, DO_GUESS, DO_NOOP, ask_action, guess_action
from casi_sim.batch import decode_table

from .test_trainer import config, run_trial

ROOT = Path(__file__).resolve().parents[2]
# every size different, so that a swapped attribute, agent or value shows
GAME = GameConfig(
    agents=["learner", "honest", "honest"],
    max_steps=6,
    attrs={"count": 5, "direct": 2, "goal": 1, "values": 3},
)
HEADS = FactoredHeads.of(GAME)


def every_factored_action() -> np.ndarray:
    c, na, m = GAME.attrs.count, GAME.n_agents, GAME.attrs.values
    rows = [
        (k, a, j, v, 4, 4, 4)
        for k in range(3)
        for a in range(c)
        for j in range(na)
        for v in range(m)
    ]
    return np.array(rows, np.int64)


def test_the_heads_are_kind_attribute_agent_value_then_intentions() -> None:
    assert HEADS == [3, 5, 3, 3, 5, 5, 5]
    assert HEADS.n_main == GAME.n_main_actions == 1 + 5 * 3 + 3 * 5


def test_the_composed_main_action_is_the_simulators_layout() -> None:
    actions = every_factored_action()
    table = decode_table(GAME)  # what the kernel does with a main action
    for (kind, attr, agent, value), main in zip(
        actions[:, :4], compose(actions, HEADS), strict=True
    ):
        if kind == KIND_NOOP:
            assert main == 0 and tuple(table[main]) == (DO_NOOP, 0, 0)
        elif kind == KIND_GUESS:
            assert main == guess_action(GAME, attr, value)
            assert tuple(table[main]) == (DO_GUESS, attr, value)
        else:
            assert kind == KIND_ASK
            assert main == ask_action(GAME, agent, attr)
            assert tuple(table[main]) == (DO_ASK, agent, attr)
    # every main action is reached, by exactly the combinations that differ in unused heads
    assert set(compose(actions, HEADS).tolist()) == set(range(GAME.n_main_actions))


def test_composed_actions_do_in_the_simulator_what_they_say() -> None:
    sim = BatchSim(GAME, batch=4, seed=5)
    sim.reset(1)
    known = sim.state()["direct"][:, 0]  # [B, C]: attributes agent 0 knows
    attr = known.argmax(axis=1)
    rows = np.zeros((4, len(HEADS)), np.int64)  # intentions: ignore
    rows[:, 1] = attr
    rows[0, 0] = KIND_NOOP
    rows[1, [0, 2]] = KIND_ASK, 0  # itself: cost_ask_self_question
    rows[2, [0, 2]] = KIND_ASK, 2  # the second honest partner: cost_ask_question
    rows[3, [0, 3]] = KIND_GUESS, 1  # an attribute it knows: cost_known_guess
    _, reward, _, info = sim.step(*joint_action([0], [rows], GAME.n_agents, HEADS))
    assert reward[:, 0].tolist() == [0.0, -20.0, -2.0, -20.0]
    assert info["asked"][:, 0].tolist() == [0, 0, 1, 0]
    assert info["asked_self"][:, 0].tolist() == [0, 1, 0, 0]


def test_the_main_distribution_is_that_of_the_composed_action() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, sum(HEADS))).astype(np.float32)
    probs = head_probs(logits, HEADS)
    actions = every_factored_action()
    expected = np.zeros((3, GAME.n_main_actions))
    for row, main in zip(actions, compose(actions, HEADS), strict=True):
        k, a, j, v = row[:4]
        # summed over the heads the kind does not use, this leaves the product of those it uses
        share = probs[0][:, k] * probs[1][:, a] * probs[2][:, j] * probs[3][:, v]
        expected[:, main] += share
    got = main_probs(probs, HEADS)
    assert np.allclose(got, expected) and np.allclose(got.sum(axis=1), 1.0)
    main, intentions = split_probs(logits, HEADS)
    assert np.allclose(main, expected) and len(intentions) == GAME.n_agents


def masked_logp(logits: np.ndarray, actions: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The joint log-probability a learner computes of a masked Train batch."""
    logits = masked(logits, allowed)
    total = np.zeros(len(logits))
    for h, cols in enumerate(head_slices(HEADS)):
        total += log_softmax(logits[:, cols])[np.arange(len(logits)), actions[:, h]]
    return total


def test_the_log_probability_leaves_out_the_heads_the_kind_does_not_use() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, sum(HEADS))).astype(np.float32)
    actions, logp = sample_heads(logits, HEADS, np.random.default_rng(2))
    probs = head_probs(logits, HEADS)
    kind, attr, agent, value = (actions[:, h] for h in range(4))
    rows = np.arange(len(logits))
    expected = np.log(probs[0][rows, kind])
    expected += np.where(kind != KIND_NOOP, np.log(probs[1][rows, attr]), 0.0)
    expected += np.where(kind == KIND_ASK, np.log(probs[2][rows, agent]), 0.0)
    expected += np.where(kind == KIND_GUESS, np.log(probs[3][rows, value]), 0.0)
    for h in range(4, len(HEADS)):
        expected += np.log(probs[h][rows, actions[:, h]])
    assert set(kind.tolist()) == {KIND_NOOP, KIND_GUESS, KIND_ASK}
    assert np.allclose(logp, expected, atol=1e-5)
    # the learner's log-probability of the masked batch is the same number
    allowed = relevance_mask(actions, HEADS)
    assert np.allclose(masked_logp(logits, actions, allowed), logp, atol=1e-5)
    assert not np.allclose(masked_logp(logits, actions, np.ones_like(allowed)), logp, atol=1e-3)


def test_the_plain_layout_samples_as_before() -> None:
    plain = [GAME.n_main_actions] + [5] * GAME.n_agents
    logits = np.random.default_rng(3).normal(size=(64, sum(plain)))
    actions, logp = sample_heads(logits, plain, np.random.default_rng(4))
    probs = head_probs(logits, plain)
    expected = sum(np.log(p[np.arange(64), actions[:, h]]) for h, p in enumerate(probs))
    assert np.allclose(logp, expected, atol=1e-5)
    main, intentions = joint_action([0], [actions], GAME.n_agents)
    assert (main[:, 0] == actions[:, 0]).all() and (intentions[:, 0] == actions[:, 1:]).all()


def test_a_factored_train_batch_is_the_policy_that_acted(tmp_path: Path) -> None:
    # one epoch of one minibatch: the learner's ratio is exp(its logp - logp_old) on
    # parameters that have not moved, so it is 1 only if both leave out the same heads
    torch_net = pytest.importorskip("casi_learner.torch_net")
    cfg = NetContract().make_cfg(
        obs_dim=GAME.obs_dim, head_sizes=list(HEADS), epochs=1, minibatches=1, hidden_sizes=[16]
    )
    nets = {True: torch_net.TorchNet(device="cpu", threads=1)}
    nets[False] = torch_net.TorchNet(device="cpu", threads=1)  # the same seed: the same model
    assert all(net.init(cfg).action_mask for net in nets.values())
    pool = LearnerPool(LearnersCfg(), tmp_path)
    fleet = Fleet(pool, [Member("a0", 0, 0, pool.add("a0", nets[True]))], lambda m: NetCfg(), 0.0)
    sim = BatchSim(GAME, batch=32, seed=1)
    roll = collect(fleet, sim, 2, np.random.default_rng(3), HEADS, False)
    fleet.close()
    kl = {}
    for relevance, net in nets.items():
        used = with_relevance(roll, HEADS) if relevance else roll
        batch, _ = training_batch(used, 0, CountBonus("none", GAME.obs_dim), AlgorithmCfg())
        assert (batch.action_mask is not None) == relevance
        kl[relevance] = net.train(1, batch)["approx_kl"]
    assert kl[True] < 1e-6 and kl[False] > 1e-3, kl


def test_a_factored_run_trains_a_torch_learner_and_logs_the_composed_main_action(
    tmp_path: Path,
) -> None:
    torch_net = pytest.importorskip("casi_learner.torch_net")
    cfg = config(
        tmp_path,
        algorithm={"factored_main": True},
        eval={"influence": True},
        log={"action_probs": True, "actions_rewards": True, "trajectories": True},
    )
    result, rows = run_trial(cfg, tmp_path, {"a0": torch_net.TorchNet(device="cpu", threads=1)})
    assert result.iteration == 4
    assert all(np.isfinite(float(r["a0.entropy"])) for r in rows)
    game = cfg.game()
    events = [json.loads(line) for line in (tmp_path / "trial-0" / "events.jsonl").open()]
    start = next(e for e in events if e["stream"] == "experiment_start")
    assert start["head_sizes"] == FactoredHeads.of(game)
    probs = [e for e in events if e["stream"] == "action_probs"]
    assert probs and all(len(e["main"]) == game.n_main_actions for e in probs)
    assert all(abs(sum(e["main"]) - 1.0) < 1e-3 for e in probs)
    kinds = [e for e in events if e["stream"] == "actions_rewards"]
    assert kinds and all(abs(e["noop"] + e["guess"] + e["ask"] - 1.0) < 1e-6 for e in kinds)
    assert all(e["ask"] > 0 and e["guess"] > 0 for e in kinds)  # kind 2 read as a guess: no ask
    steps = [s for e in events if e["stream"] == "trajectories" for s in e["steps"]]
    assert all(0 <= a["a0"][0] < game.n_main_actions for a in (s["actions"] for s in steps))
    assert "factored_main = true" in (tmp_path / "trial-0" / "config.toml").read_text()


def test_factored_main_off_leaves_the_config_and_fingerprint_as_before() -> None:
    cfg = load_config(ROOT / "experiments" / "exp5_big_honest.toml")
    assert "factored_main" not in cfg.resolved()["algorithm"]
    on = cfg.model_copy(update={"algorithm": AlgorithmCfg(factored_main=True)})
    assert on.resolved()["algorithm"]["factored_main"] is True
    assert on.fingerprint() != cfg.model_copy(update={"algorithm": AlgorithmCfg()}).fingerprint()


def test_factored_main_with_mask_pointless_is_one_clear_config_error(tmp_path: Path) -> None:
    text = (ROOT / "experiments" / "exp5_big_honest.toml").read_text()
    path = tmp_path / "both.toml"
    path.write_text(text.replace("[algorithm]\n", "[algorithm]\nfactored_main = true\n"))
    load_config(path)
    path.write_text(
        text.replace("[algorithm]\n", "[algorithm]\nfactored_main = true\nmask_pointless = true\n")
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.lines) == 1
    assert "algorithm" in err.value.lines[0] and "factored_main and mask_pointless" in str(
        err.value
    )


def test_a_scripted_learner_refuses_factored_heads() -> None:
    # it answers by the game's own layout, which a factored one is not
    cfg = NetContract().make_cfg(obs_dim=GAME.obs_dim, head_sizes=list(HEADS))
    with pytest.raises(NetError, match=r"NetCfg.head_sizes: expected \[A, 5, 5, \.\.\.\]"):
        ScriptedNet("honest").init(cfg)
