"""A PettingZoo ``ParallelEnv`` view of one CASI episode.

Every ``learner`` slot ``i`` of the config is a PettingZoo agent named ``a<i>`` (its position
among all slots); the scripted slots play inside the simulator and are not agents. An agent's
action is ``MultiDiscrete([A] + [N_INTENTIONS] * na)``: its main action, then its intention
towards every slot (its own is ignored); its observation is ``Box(0, 1, (obs_dim,), float32)``.

An agent is *terminated* when it wins or when ``end_on_first_win`` ends the episode, and
*truncated* when the episode reaches ``max_steps``. By default it then leaves ``agents``.
With ``keep_finished=True`` it stays in ``agents`` and in every dict until the whole episode
ends: its actions are ignored, its reward is 0, its observation has the done flag set, and
its termination (or truncation) stays True. That is the fixed set of agents that vector-env
converters (SuperSuit's ``pettingzoo_env_to_vec_env_v1``) and TorchRL's
``PettingZooWrapper(done_on_any=False)`` expect; ``docs/interop.md`` has the recipes.

A missing action counts as noop with every intention ``ignore``. ``reset(seed)`` restarts the
random streams from ``seed``; ``reset()`` draws the next episode of the current stream.
``state()`` is every slot's observation (scripted slots too), then a one-hot of the world's
values. ``render_mode="ansi"`` makes ``render()`` return the last step in words
(:mod:`casi_sim.narrate`; after ``reset()``, the world), ``"human"`` prints it. Every argument
is a keyword.

PettingZoo and gymnasium are imported here only: ``import casi_sim`` does not need them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from casi_sim import narrate
from casi_sim.actions import IGNORE, N_INTENTIONS, NOOP
from casi_sim.batch import INFO_KEYS, BatchSim
from casi_sim.config import GameConfig

RENDER_MODES = ["ansi", "human"]


def parallel_env(
    *args: Any,
    seed: int = 0,
    keep_finished: bool = False,
    render_mode: str | None = None,
    **game_keys: Any,
) -> CasiParallelEnv:
    """The ParallelEnv of the game given by the keys of :class:`GameConfig`."""
    _no_positional("parallel_env", args, "agents=['learner', 'honest'], max_steps=10")
    return CasiParallelEnv(
        cfg=GameConfig(**game_keys),
        seed=seed,
        keep_finished=keep_finished,
        render_mode=render_mode,
    )


def _no_positional(name: str, args: tuple[Any, ...], example: str) -> None:
    if args:
        shown = ", ".join(repr(a) for a in args)
        raise TypeError(
            f"{name}() takes keyword arguments only, got {len(args)} positional ({shown}); "
            f"name each one, e.g. {name}({example})"
        )


class CasiParallelEnv(ParallelEnv):  # type: ignore[type-arg]
    metadata = {"name": "casi_v0", "render_modes": RENDER_MODES, "is_parallelizable": True}

    def __init__(
        self,
        *args: Any,
        cfg: GameConfig | None = None,
        seed: int = 0,
        keep_finished: bool = False,
        render_mode: str | None = None,
    ) -> None:
        _no_positional("CasiParallelEnv", args, "cfg=GameConfig(...), seed=0")
        if not isinstance(cfg, GameConfig):
            raise TypeError(f"CasiParallelEnv() needs cfg=GameConfig(...), got {cfg!r}")
        if not isinstance(keep_finished, bool):
            raise TypeError(f"keep_finished must be True or False, got {keep_finished!r}")
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(
                f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}"
            )
        self.cfg = cfg
        self.keep_finished = keep_finished
        self.render_mode = render_mode
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
        state_dim = na * cfg.obs_dim + cfg.attrs.count * cfg.attrs.values
        self.state_space = spaces.Box(0.0, 1.0, (state_dim,), np.float32)
        self._sim = BatchSim(cfg, batch=1, seed=seed)
        self._obs: np.ndarray | None = None
        self._finished: dict[str, tuple[bool, bool]] = {}
        """keep_finished: the (terminated, truncated) of each agent that is done."""
        self._text = ""
        """render(): the last step (or after reset() the world) in words."""

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        obs = self._sim.reset(seed)
        self._obs = obs[0]
        self._finished = {}
        self.agents = list(self.possible_agents)
        if self.render_mode is not None:
            self._text = "\n".join(["step 0", *narrate.world_lines(self.cfg, self._sim.state(), 0)])
        return (
            {a: obs[0, self._slot[a]] for a in self.agents},
            {a: {} for a in self.agents},
        )

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self._obs is not None and not self.agents:
            raise RuntimeError(
                "step() after the episode ended (every agent is terminated or truncated): "
                "call reset(). A wrapper that steps on, such as SuperSuit's black_death_v3 up "
                "to 3.11.0, is not needed with keep_finished=True (docs/interop.md)"
            )
        main, intentions = self._sim_actions(actions)
        if self.render_mode is None:
            obs, reward, done, info = self._sim.step(main, intentions)
        else:
            obs, reward, done, info, turns = narrate.step(self._sim, main, intentions)
            self._text = narrate.text(self.cfg, turns[0])
        self._obs = obs[0]
        ended_by_win = bool(info["won"][0].any()) and self.cfg.end_on_first_win
        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for agent in self.agents:
            i = self._slot[agent]
            observations[agent] = obs[0, i]
            rewards[agent] = float(reward[0, i])
            terminated, truncated = self._finished.get(agent, (False, False))
            if done[0, i] and agent not in self._finished:
                terminated = bool(info["won"][0, i]) or ended_by_win
                truncated = not terminated
                if self.keep_finished:
                    self._finished[agent] = (terminated, truncated)
            terminations[agent] = terminated
            truncations[agent] = truncated
            infos[agent] = {key: info[key][0, i] for key in INFO_KEYS}
        playing = [a for a in self.agents if not done[0, self._slot[a]]]
        if not self.keep_finished or not playing:
            self.agents = playing
        return observations, rewards, terminations, truncations, infos

    def _sim_actions(self, actions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The simulator's main [1, na] and intentions [1, na, na] arrays of ``actions``;
        the actions of finished agents (kept with ``keep_finished``) are ignored."""
        na = self.cfg.n_agents
        main = np.full((1, na), NOOP, np.int64)
        intentions = np.full((1, na, na), IGNORE, np.int64)
        for agent, action in actions.items():
            if agent not in self.agents:
                raise ValueError(f"action for {agent!r}, which is not a live agent: {self.agents}")
            if agent in self._finished:
                continue
            flat = np.asarray(action, dtype=np.int64).reshape(-1)
            if flat.shape != (1 + na,):
                raise ValueError(
                    f"action of {agent} must have {1 + na} entries (main, then {na} "
                    f"intentions), got {flat.shape[0]}"
                )
            main[0, self._slot[agent]] = flat[0]
            intentions[0, self._slot[agent]] = flat[1:]
        return main, intentions

    def state(self) -> np.ndarray:
        """Every slot's observation in slot order, then the world's values one-hot
        (``attrs.count * attrs.values`` entries): float32 ``state_space.shape``."""
        if self._obs is None:
            raise RuntimeError("call reset() before state()")
        c, m = self.cfg.attrs.count, self.cfg.attrs.values
        values = np.zeros((c, m), np.float32)
        values[np.arange(c), self._sim.state()["values"][0]] = 1.0
        return np.concatenate([self._obs.reshape(-1), values.reshape(-1)])

    def render(self) -> str | None:
        """The last step in words (``"ansi"``), printed (``"human"``); None without a mode."""
        if self.render_mode is None:
            return None
        if not self._text:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "human":
            print(self._text)
            return None
        return self._text

    def close(self) -> None:
        return None
