"""A PettingZoo ``ParallelEnv`` view of one CASI episode.

Every ``learner`` slot ``i`` of the config is a PettingZoo agent named ``a<i>`` (its position
among all slots); the scripted slots play inside the simulator and are not agents. An agent's
action is ``MultiDiscrete([A] + [N_INTENTIONS] * na)``: its main action, then its intention
towards every slot (its own is ignored); its observation is ``Box(0, 1, (obs_dim,), float32)``.

An agent is *terminated* when it wins or when ``end_on_first_win`` ends the episode, and
*truncated* when the episode reaches ``max_steps``; it then leaves ``agents``. A missing
action counts as noop with every intention ``ignore``. ``reset(seed)`` restarts the random
streams from ``seed``; ``reset()`` draws the next episode of the current stream.

PettingZoo and gymnasium are imported here only: ``import casi_sim`` does not need them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from casi_sim.actions import IGNORE, N_INTENTIONS, NOOP
from casi_sim.batch import INFO_KEYS, BatchSim
from casi_sim.config import GameConfig


def parallel_env(seed: int = 0, **game_keys: Any) -> CasiParallelEnv:
    """The ParallelEnv of the game given by the keys of :class:`GameConfig`."""
    return CasiParallelEnv(GameConfig(**game_keys), seed=seed)


class CasiParallelEnv(ParallelEnv):  # type: ignore[type-arg]
    metadata = {"name": "casi_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, cfg: GameConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.render_mode = None
        self._slot = {f"a{i}": i for i, kind in enumerate(cfg.agents) if kind == "learner"}
        if not self._slot:
            raise ValueError(
                f"agents = {cfg.agents}: the PettingZoo view needs at least one 'learner' slot"
            )
        self.possible_agents = list(self._slot)
        self.agents: list[str] = []
        na = cfg.n_agents
        self._observation_spaces = {
            a: spaces.Box(0.0, 1.0, (cfg.obs_dim,), np.float32) for a in self.possible_agents
        }
        self._action_spaces = {
            a: spaces.MultiDiscrete([cfg.n_main_actions] + [N_INTENTIONS] * na)
            for a in self.possible_agents
        }
        self._sim = BatchSim(cfg, batch=1, seed=seed)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        obs = self._sim.reset(seed)
        self.agents = list(self.possible_agents)
        return (
            {a: obs[0, self._slot[a]] for a in self.agents},
            {a: {} for a in self.agents},
        )

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        na = self.cfg.n_agents
        main = np.full((1, na), NOOP, np.int64)
        intentions = np.full((1, na, na), IGNORE, np.int64)
        for agent, action in actions.items():
            if agent not in self.agents:
                raise ValueError(f"action for {agent!r}, which is not a live agent: {self.agents}")
            flat = np.asarray(action, dtype=np.int64).reshape(-1)
            if flat.shape != (1 + na,):
                raise ValueError(
                    f"action of {agent} must have {1 + na} entries (main, then {na} "
                    f"intentions), got {flat.shape[0]}"
                )
            main[0, self._slot[agent]] = flat[0]
            intentions[0, self._slot[agent]] = flat[1:]
        obs, reward, done, info = self._sim.step(main, intentions)
        ended_by_win = bool(info["won"][0].any()) and self.cfg.end_on_first_win
        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for agent in self.agents:
            i = self._slot[agent]
            observations[agent] = obs[0, i]
            rewards[agent] = float(reward[0, i])
            terminated = bool(done[0, i]) and (bool(info["won"][0, i]) or ended_by_win)
            terminations[agent] = terminated
            truncations[agent] = bool(done[0, i]) and not terminated
            infos[agent] = {key: info[key][0, i] for key in INFO_KEYS}
        self.agents = [a for a in self.agents if not done[0, self._slot[a]]]
        return observations, rewards, terminations, truncations, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None
