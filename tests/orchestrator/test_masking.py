"""``[algorithm] mask_pointless``: rollouts and evaluations sample no pointless action, the
Train batch carries the mask, and the learner trains the masked policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from casi.v1.net_pb2 import NetCfg
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.rollout import collect
from casi_orchestrator.wire import head_sizes
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from casi_sim import BatchSim, GameConfig
from casi_sim.actions import GUESS_CORRECT, GUESS_INCORRECT

from .test_trainer import config, run_trial

GAME = GameConfig(
    agents=["learner", "learner", "honest"],
    max_steps=8,
    attrs={"count": 4, "direct": 2, "goal": 1, "values": 3},
)


class RecordingSim(BatchSim):
    """A BatchSim that keeps the info of every step."""

    infos: list[dict[str, np.ndarray]]

    def step(self, main, intentions):  # type: ignore[no-untyped-def]
        out = super().step(main, intentions)
        self.infos.append(out[3])
        return out


def pointless_counts(tmp_path: Path, mask: bool) -> dict[str, int]:
    heads = head_sizes(GAME)
    pool = LearnerPool(LearnersCfg(), tmp_path)
    members = []
    for slot, name in enumerate(["a0", "a1"]):
        net = ScriptedNet("random")  # uniform logits: every action is sampled
        net.init(NetContract().make_cfg(obs_dim=GAME.obs_dim, head_sizes=heads))
        members.append(Member(name, slot, slot, pool.add(name, net)))  # type: ignore[arg-type]
    fleet = Fleet(pool, members, lambda m: NetCfg(), remote_wait=0.0)
    sim = RecordingSim(GAME, batch=64, seed=1)
    sim.infos = []
    roll = collect(fleet, sim, 2, np.random.default_rng(3), heads, False, None, mask)
    fleet.close()
    learners = slice(0, 2)
    guesses = sum(info["guesses"][:, learners] for info in sim.infos)
    penalised = guesses.sum() - guesses[..., [GUESS_CORRECT, GUESS_INCORRECT]].sum()
    assert (roll.allowed is not None) == mask
    return {
        "asked self": int(sum(info["asked_self"][:, learners].sum() for info in sim.infos)),
        "unnecessary replies": int(
            sum(info["unnecessary"][:, learners].sum() for info in sim.infos)
        ),
        "penalised guesses": int(penalised),
        "useful guesses": int(guesses[..., [GUESS_CORRECT, GUESS_INCORRECT]].sum()),
        "questions": int(sum(info["asked"][:, learners].sum() for info in sim.infos)),
    }


def test_a_masked_rollout_takes_no_pointless_action(tmp_path: Path) -> None:
    free, masked = pointless_counts(tmp_path / "free", False), pointless_counts(tmp_path, True)
    for kind in ("asked self", "unnecessary replies", "penalised guesses"):
        assert free[kind] > 0 and masked[kind] == 0, (kind, free, masked)
    assert masked["useful guesses"] > 0 and masked["questions"] > 0, masked


@pytest.mark.parametrize("mask", [False, True])
def test_masking_removes_the_cost_of_unnecessary_replies(tmp_path: Path, mask: bool) -> None:
    # the scripted honest policy replies to everyone every step: 10 steps x 20 points, unless
    # the mask leaves it nothing but ignore towards a partner that asked nothing
    cfg = config(tmp_path, algorithm={"mask_pointless": mask})
    _, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("honest")})
    assert rows[1]["a0.return"] == ("0.0" if mask else "-200.0")


def test_a_masked_run_trains_a_torch_learner(tmp_path: Path) -> None:
    torch_net = pytest.importorskip("casi_learner.torch_net")
    cfg = config(tmp_path, algorithm={"mask_pointless": True}, eval={"influence": True})
    net = torch_net.TorchNet(device="cpu", threads=1)
    result, rows = run_trial(cfg, tmp_path, {"a0": net})
    assert result.iteration == 4
    assert all(np.isfinite(float(r["a0.entropy"])) for r in rows)


class UnmaskedNet(ScriptedNet):
    """An implementation that predates Sequences.action_mask."""

    def init(self, cfg: NetCfg):  # type: ignore[no-untyped-def]
        reply = super().init(cfg)
        reply.action_mask = False
        return reply


def test_a_learner_that_does_not_honour_masks_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"mask_pointless": True})
    with pytest.raises(NetError, match=r"learner a0 .* \(InitReply.action_mask is false\)"):
        run_trial(cfg, tmp_path, {"a0": UnmaskedNet("silent")})
    run_trial(config(tmp_path / "off"), tmp_path / "off", {"a0": UnmaskedNet("silent")})
