"""BatchSim: the public, batched simulator; a thin adapter over the numba kernel."""

from __future__ import annotations

import numpy as np

from casi_sim import kernel, masks, rng
from casi_sim._validate import as_actions, check_batch, check_seed
from casi_sim.actions import (
    DO_ASK,
    DO_GUESS,
    INCENTIVE_KEYS,
    KIND_CODES,
    N_GUESS_OUTCOMES,
    N_INTENTIONS,
)
from casi_sim.config import GameConfig

INFO_KEYS = kernel.Outputs._fields[2:]
"""The info arrays of a step: the fields of ``kernel.Outputs`` after reward and done."""


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
        self._game = game_of(cfg)
        self._worlds, self._progress, self._channels, scratch = _allocate(
            self.batch, self.n_agents, cfg.attrs.count
        )
        # the observations are state: each step updates only what it changed
        self._obs = np.zeros((self.batch, self.n_agents, self.obs_dim), np.float32)
        self._state = kernel.plain(
            self._game, self._worlds, self._progress, self._channels, scratch
        )
        """The kernels' first arguments; the arrays are updated in place, never replaced."""
        self._row_states: dict[tuple[int, int], tuple[tuple[object, ...], ...]] = {}
        """The same for rows start:stop of the batch (views), by (start, stop)."""
        self._started = False

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episodes; returns the observations, float32 [B, na, obs_dim]."""
        if seed is not None:
            self._seed, self._epoch = check_seed(seed), 0
        else:
            self._epoch += 1
        word, first_word = rng.seed_word(self._seed), rng.seed_word(self._first_seed)
        failed = kernel.reset_kernel(
            *self._state, self._obs, np.uint64(word), self._epoch, np.uint64(first_word)
        )
        if failed >= 0:
            raise RuntimeError(
                f"episode {failed}: no world with attrs {self.cfg.attrs} found in "
                f"{rng.MAX_ATTEMPTS} draws of the direct sets: raise attrs.count or lower "
                "attrs.goal"
            )
        self._started = True
        return self._obs.copy()

    def step(
        self, main: np.ndarray, intentions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One step of every episode: ``(obs, reward, done, info)``, all fresh arrays.

        ``main`` int [B, na], ``intentions`` int [B, na, na]; the slots of scripted agents
        and of done agents are ignored. ``info`` holds the arrays of ``INFO_KEYS``.
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._progress.t[0] >= self.cfg.max_steps:
            raise RuntimeError(f"the episodes ended at t = {self.cfg.max_steps}: call reset()")
        acting = self._learner[None, :] & ~self._progress.done
        main, intentions = as_actions(
            main, intentions, acting, self.n_main_actions, self.n_intentions
        )
        reward, done, info = _outputs(self.batch, self.n_agents)
        # plain tuples (a kernel.Actions and a kernel.Outputs): building the named ones would
        # cost a tenth of a step at B = 1
        out = (reward, done, *(info[k] for k in INFO_KEYS))
        kernel.step_kernel(*self._state, self._obs, (main, intentions), out)
        return self._obs.copy(), reward, done, info

    def step_rows(
        self, rows: slice, main: np.ndarray, intentions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`step` for the episodes ``rows`` only (a slice of the batch, step 1):
        ``main`` int [R, na], ``intentions`` int [R, na, na]; returns the arrays of those
        rows. The episodes are independent, so stepping the batch part by part gives, row for
        row, what one step of the whole batch gives; parts may be a step apart (a pipelined
        rollout), but :meth:`step` wants them level again."""
        if not self._started:
            raise RuntimeError("call reset() before step_rows()")
        start, stop, stride = rows.indices(self.batch)
        if stride != 1 or start >= stop:
            raise ValueError(f"rows must be a non-empty slice of [0, {self.batch}), got {rows}")
        if self._progress.t[start] >= self.cfg.max_steps:
            raise RuntimeError(f"the episodes ended at t = {self.cfg.max_steps}: call reset()")
        state = self._row_states.get((start, stop))
        if state is None:
            state = self._row_states[(start, stop)] = _rows_of(self._state, start, stop)
        acting = self._learner[None, :] & ~self._progress.done[start:stop]
        main, intentions = as_actions(
            main, intentions, acting, self.n_main_actions, self.n_intentions
        )
        reward, done, info = _outputs(stop - start, self.n_agents)
        obs = self._obs[start:stop]
        out = (reward, done, *(info[k] for k in INFO_KEYS))
        kernel.step_kernel(*state, obs, (main, intentions), out)
        return obs.copy(), reward, done, info

    def allowed_actions(self) -> tuple[np.ndarray, np.ndarray]:
        """The actions that are not pointless now (:mod:`casi_sim.masks`): main bool
        [B, na, A] and intentions bool [B, na, na, N_INTENTIONS], True where allowed."""
        return masks.allowed_actions(
            self._worlds,
            self._progress,
            self._channels,
            self.cfg.attrs.values,
            self.cfg.incentives.max_guesses_per_attr,
        )

    def channels(self) -> dict[str, np.ndarray]:
        """Copies of what the agents told each other (for narration): ask_to, ask_attr [B,na]
        (whom each agent asked in the step just resolved, or -1; about what), answer_kind,
        answer_value [B,na,na,C] (the latest answer q got from j about a), and the episode
        keys [B] that seed the scripted random agents."""
        ch = self._channels
        return {
            "ask_to": ch.ask_to.copy(),
            "ask_attr": ch.ask_attr.copy(),
            "answer_kind": ch.answer_kind.copy(),
            "answer_value": ch.answer_value.copy(),
            "key": self._worlds.key.copy(),
        }

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the episodes' state: values [B,C], direct/goal/solved bool [B,na,C],
        guesses [B,na,C], won/done bool [B,na], t [B], salt uint64 [B,na]."""
        worlds, progress = self._worlds, self._progress
        return {
            "values": worlds.values.copy(),
            "direct": worlds.direct.copy(),
            "goal": worlds.goal.copy(),
            "solved": progress.solved.copy(),
            "guesses": progress.guesses.copy(),
            "won": progress.won.copy(),
            "done": progress.done.copy(),
            "t": progress.t.copy(),
            "salt": worlds.salt.copy(),
        }


def _rows_of(
    state: tuple[tuple[object, ...], ...], start: int, stop: int
) -> tuple[tuple[object, ...], ...]:
    """The kernels' arguments for rows start:stop: views of the per-episode arrays."""
    game, worlds, progress, channels, scratch = state
    part = [tuple(a[start:stop] for a in x) for x in (worlds, progress, channels)]  # type: ignore[index]
    return (game, *part, scratch)


def _outputs(b: int, na: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Empty reward [b, na], done [b, na] and info arrays for one step of ``b`` episodes."""
    info = {
        "asked": np.empty((b, na), np.int32),
        "asked_self": np.empty((b, na), np.int32),
        "answers": np.empty((b, na, N_INTENTIONS), np.int32),
        "unnecessary": np.empty((b, na), np.int32),
        "guesses": np.empty((b, na, N_GUESS_OUTCOMES), np.int32),
        "won": np.empty((b, na), np.bool_),
        "own_reward": np.empty((b, na), np.float32),
    }
    return np.empty((b, na), np.float32), np.empty((b, na), np.bool_), info


def _allocate(
    b: int, na: int, c: int
) -> tuple[kernel.Worlds, kernel.Progress, kernel.Channels, kernel.Scratch]:
    worlds = kernel.Worlds(
        values=np.zeros((b, c), np.int32),
        direct=np.zeros((b, na, c), np.bool_),
        goal=np.zeros((b, na, c), np.bool_),
        salt=np.zeros((b, na), np.uint64),
        key=np.zeros(b, np.uint64),
    )
    progress = kernel.Progress(
        solved=np.zeros((b, na, c), np.bool_),
        guesses=np.zeros((b, na, c), np.int32),
        won=np.zeros((b, na), np.bool_),
        done=np.zeros((b, na), np.bool_),
        t=np.zeros(b, np.int32),
    )
    channels = kernel.Channels(
        answer_kind=np.zeros((b, na, na, c), np.int8),
        answer_value=np.zeros((b, na, na, c), np.int32),
        ask_to=np.full((b, na), -1, np.int32),
        ask_attr=np.full((b, na), -1, np.int32),
    )
    # scratch: the kernels allocate nothing
    scratch = kernel.Scratch(
        perm=np.zeros(c, np.int64), pool=np.zeros(c, np.int64), acc=np.zeros(na, np.float64)
    )
    return worlds, progress, channels, scratch


def game_of(cfg: GameConfig) -> kernel.Game:
    """The kernels' view of a config."""
    a, inc = cfg.attrs, cfg.incentives
    return kernel.Game(
        c=a.count,
        d=a.direct,
        g=a.goal,
        m=a.values,
        na=cfg.n_agents,
        steps=cfg.max_steps,
        max_guesses=inc.max_guesses_per_attr,
        n_main=cfg.n_main_actions,
        end_on_first_win=cfg.end_on_first_win,
        fixed_world=cfg.init == "fixed",
        incentives=np.array([getattr(inc, k) for k in INCENTIVE_KEYS], np.float64),
        decode=decode_table(cfg),
        kinds=np.array([KIND_CODES[k] for k in cfg.agents], np.int64),
    )


def decode_table(cfg: GameConfig) -> np.ndarray:
    """Main action -> (DO_NOOP | DO_GUESS | DO_ASK, attr | agent, value | attr), int64 [A, 3]."""
    c, m = cfg.attrs.count, cfg.attrs.values
    table = np.zeros((cfg.n_main_actions, 3), np.int64)
    for action in range(1, cfg.n_main_actions):
        if action <= c * m:
            table[action] = (DO_GUESS, *divmod(action - 1, m))
        else:
            table[action] = (DO_ASK, *divmod(action - 1 - c * m, c))
    return table
