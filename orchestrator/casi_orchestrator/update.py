"""From a rollout to an update: exploration bonus, advantages (GAE), and Train."""

from __future__ import annotations

import numpy as np
from casi_proto.api import Sequences

from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.config import AlgorithmCfg
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.gae import gae
from casi_orchestrator.rollout import RolloutBuffer


def training_batch(
    roll: RolloutBuffer, k: int, bonus: CountBonus, alg: AlgorithmCfg, bonus_scale: float = 1.0
) -> tuple[Sequences, float]:
    """Learning agent ``k``'s Train batch, and its mean bonus per acted step.

    The bonus is computed on the observations the agent acted on (which updates its count
    table), multiplied by ``bonus_scale`` (``[bonus] decay_iterations``) and added, in scaled
    units, to the scaled game reward of those steps.
    """
    acted = roll.mask[k] > 0
    extra = np.zeros(acted.shape, np.float32)
    extra[acted] = bonus(roll.obs[k][acted])
    if bonus_scale != 1.0:
        extra *= np.float32(bonus_scale)
    mean = float(extra[acted].mean()) if acted.any() else 0.0
    rewards = roll.rewards[k] * np.float32(alg.reward_scale) + extra
    adv, ret = gae(rewards, roll.values[k], roll.mask[k], alg.gamma, alg.lam)
    batch = Sequences(
        obs=roll.obs[k], actions=roll.actions[k], logp_old=roll.logp[k],
        values_old=roll.values[k], advantages=adv, returns=ret, mask=roll.mask[k],
        action_mask=None if roll.allowed is None else roll.allowed[k].astype(np.float32),
    )  # fmt: skip
    return batch, mean


def train(
    fleet: Fleet, step: int, batches: dict[str, Sequences], members: list[Member]
) -> dict[str, dict[str, float]]:
    """Train on every given member concurrently; each then hands over its new parameters.

    A member's ``params`` are replaced only after its Train and GetParams both succeeded, so a
    learner lost in between is given back the state before this Train, which it repeats.
    """

    def one(m: Member) -> dict[str, float]:
        loss = m.net.train(step, batches[m.name])
        m.params = m.net.get_params()
        return loss

    results = fleet.recovering(lambda: fleet.each(one, members))
    return {m.name: r for m, r in zip(members, results, strict=True)}
