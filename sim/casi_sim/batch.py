"""BatchSim: the public, batched simulator; a thin adapter over the numba kernel."""

from __future__ import annotations

import numpy as np

from casi_sim import kernel, rng
from casi_sim._validate import as_actions, check_batch, check_seed
from casi_sim.config import INCENTIVE_KEYS, GameConfig

INFO_KEYS = ("asked", "asked_self", "answers", "unnecessary", "guesses", "won")


class BatchSim:
    """``batch`` independent episodes of one game, advanced in lock step.

    ``reset(seed)`` restarts every random stream (worlds and their salts under
    ``init = random``, the scripted ``random`` agents) from ``seed``, so a rollout is a pure function of that seed and
    the actions; ``reset()`` without a seed draws the next episodes of the current stream.
    Under ``init = fixed`` every episode has the world (salts included) drawn from the
    constructor's seed.
    """

    def __init__(self, cfg: GameConfig, batch: int, seed: int = 0) -> None:
        self.cfg = cfg
        self.batch = check_batch(batch)
        self.n_agents = cfg.n_agents
        self.obs_dim = cfg.obs_dim
        self.n_main_actions = cfg.n_main_actions
        self.n_intentions = cfg.n_intentions
        self.learners = [i for i, kind in enumerate(cfg.agents) if kind == "learner"]
        """The slots whose actions the caller provides."""
        self._first_seed = check_seed(seed)
        self._seed = self._first_seed
        self._epoch = -1
        self._learner = np.array([k == "learner" for k in cfg.agents])
        self._dims, self._inc, self._decode, self._kinds = _constants(cfg)
        self._alloc()
        self._started = False

    def _alloc(self) -> None:
        b, na, c = self.batch, self.n_agents, self.cfg.attrs.count
        self._values = np.zeros((b, c), np.int32)
        self._direct = np.zeros((b, na, c), np.bool_)
        self._goal = np.zeros((b, na, c), np.bool_)
        self._salt = np.zeros((b, na), np.uint64)
        self._ekey = np.zeros(b, np.uint64)
        self._solved = np.zeros((b, na, c), np.bool_)
        self._guesses = np.zeros((b, na, c), np.int32)
        self._won = np.zeros((b, na), np.bool_)
        self._done = np.zeros((b, na), np.bool_)
        self._t = np.zeros(b, np.int32)
        self._ans_kind = np.zeros((b, na, na, c), np.int8)
        self._ans_val = np.zeros((b, na, na, c), np.int32)
        self._ask_to = np.full((b, na), -1, np.int32)
        self._ask_attr = np.full((b, na), -1, np.int32)
        self._perm = np.zeros(c, np.int64)  # scratch: the kernels allocate nothing
        self._pool = np.zeros(c, np.int64)
        self._acc = np.zeros(na, np.float64)
        # the observations are state: each step updates only what it changed
        self._obs = np.zeros((b, na, self.obs_dim), np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episodes; returns the observations, float32 [B, na, obs_dim]."""
        if seed is not None:
            self._seed, self._epoch = check_seed(seed), 0
        else:
            self._epoch += 1
        obs = self._obs
        failed = kernel.reset_kernel(
            np.uint64(rng.seed_word(self._seed)), self._epoch,
            np.uint64(rng.seed_word(self._first_seed)), self.cfg.init == "fixed", self._dims,
            self._perm, self._pool, self._values, self._direct, self._goal, self._salt, self._ekey, self._solved,
            self._guesses, self._won, self._done, self._t, self._ans_kind, self._ans_val,
            self._ask_to, self._ask_attr, obs,
        )  # fmt: skip
        if failed >= 0:
            raise RuntimeError(
                f"episode {failed}: no world with attrs {self.cfg.attrs} found in "
                f"{rng.MAX_ATTEMPTS} draws of the direct sets: raise attrs.count or lower "
                "attrs.goal"
            )
        self._started = True
        return obs.copy()

    def step(
        self, main: np.ndarray, intentions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One step of every episode: ``(obs, reward, done, info)``, all fresh arrays.

        ``main`` int [B, na], ``intentions`` int [B, na, na]; the slots of scripted agents
        and of done agents are ignored. ``info`` holds the arrays of ``INFO_KEYS``.
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._t[0] >= self.cfg.max_steps:
            raise RuntimeError(f"the episodes ended at t = {self.cfg.max_steps}: call reset()")
        acting = self._learner[None, :] & ~self._done
        main, intentions = as_actions(
            main, intentions, acting, self.n_main_actions, self.n_intentions
        )
        b, na = self.batch, self.n_agents
        reward = np.empty((b, na), np.float32)
        done = np.empty((b, na), np.bool_)
        info = {
            "asked": np.empty((b, na), np.int32),
            "asked_self": np.empty((b, na), np.int32),
            "answers": np.empty((b, na, 5), np.int32),
            "unnecessary": np.empty((b, na), np.int32),
            "guesses": np.empty((b, na, 6), np.int32),
            "won": np.empty((b, na), np.bool_),
        }
        kernel.step_kernel(
            self._dims, self._inc, self._decode, self._kinds, self._acc, self._values, self._direct, self._goal,
            self._salt, self._ekey, self._solved, self._guesses, self._won, self._done, self._t,
            self._ans_kind, self._ans_val, self._ask_to, self._ask_attr, self._obs, main,
            intentions, reward, done, *(info[k] for k in INFO_KEYS),
        )  # fmt: skip
        return self._obs.copy(), reward, done, info

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the episodes' state: values [B,C], direct/goal/solved bool [B,na,C],
        guesses [B,na,C], won/done bool [B,na], t [B], salt uint64 [B,na]."""
        return {
            "values": self._values.copy(),
            "direct": self._direct.copy(),
            "goal": self._goal.copy(),
            "solved": self._solved.copy(),
            "guesses": self._guesses.copy(),
            "won": self._won.copy(),
            "done": self._done.copy(),
            "t": self._t.copy(),
            "salt": self._salt.copy(),
        }


def _constants(cfg: GameConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's view of a config: dims, incentives, decode table, kinds."""
    a, inc = cfg.attrs, cfg.incentives
    dims = np.zeros(kernel.DIMS, np.int64)
    dims[kernel.C_], dims[kernel.D_], dims[kernel.G_] = a.count, a.direct, a.goal
    dims[kernel.M_], dims[kernel.NA_], dims[kernel.T_] = a.values, cfg.n_agents, cfg.max_steps
    dims[kernel.MAXG_] = inc.max_guesses_per_attr
    dims[kernel.A_] = cfg.n_main_actions
    dims[kernel.EOFW_] = int(cfg.end_on_first_win)
    incentives = np.array([getattr(inc, k) for k in INCENTIVE_KEYS], np.float64)
    kinds = np.array([kernel.KIND_CODES[k] for k in cfg.agents], np.int64)
    return dims, incentives, decode_table(cfg), kinds


def decode_table(cfg: GameConfig) -> np.ndarray:
    """Main action -> (NOOP | GUESS | ASK_OTHER, attr | agent, value | attr), int64 [A, 3]."""
    c, m = cfg.attrs.count, cfg.attrs.values
    table = np.zeros((cfg.n_main_actions, 3), np.int64)
    for action in range(1, cfg.n_main_actions):
        if action <= c * m:
            table[action] = (kernel.GUESS, *divmod(action - 1, m))
        else:
            table[action] = (kernel.ASK_OTHER, *divmod(action - 1 - c * m, c))
    return table
