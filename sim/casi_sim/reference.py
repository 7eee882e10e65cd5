"""The rules of CASI in plain Python: the documentation of the game.

Read it top to bottom: the world (SPEC 2.2), the answers and the consistent lie (2.3), the
scripted agents (2.6), one step of one episode (2.3, with the two incentive mechanisms beyond
the original study: the helpful-answer reward and the prosocial term), the observation (2.5),
and last a batch
adapter with the API of :class:`casi_sim.BatchSim`, so that the numba kernel can be compared
with these rules step for step. It is slow on purpose: every rule is written out once, in the
order it applies. All randomness comes from :mod:`casi_sim.rng`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from casi_sim import rng
from casi_sim._validate import as_actions, check_batch, check_seed
from casi_sim.actions import (
    ANSWER_KINDS,
    ANSWER_KNOWN,
    ANSWER_NONE,
    ANSWER_UNKNOWN,
    ANSWER_VALUE,
    CELL_FLAGS,
    COMPLETE_TRUTH,
    GENERAL_LIE,
    GUESS_CORRECT,
    GUESS_EXCESSIVE,
    GUESS_INCORRECT,
    GUESS_KNOWN,
    GUESS_NON_GOAL,
    GUESS_SOLVED,
    IGNORE,
    INCOMPLETE_TRUTH,
    N_GUESS_OUTCOMES,
    N_INTENTIONS,
    NOOP,
    SPECIFIC_LIE,
)
from casi_sim.config import GameConfig

# ---------------------------------------------------------------------------------------------
# The world (SPEC 2.2)


@dataclass
class World:
    values: list[int]  # the true value of every attribute
    direct: list[set[int]]  # D_i: what agent i knows from direct experience
    goal: list[set[int]]  # G_i: what agent i must solve to win
    salt: list[int]  # agent i's private 64-bit salt, behind its lies


def choose(pool: Iterable[int], words: list[int]) -> list[int]:
    """``len(words)`` distinct items of ``pool``: the first steps of a Fisher-Yates shuffle,
    step ``s`` swapping item ``s`` with item ``s + words[s] % (len(pool) - s)``."""
    items = list(pool)
    for s, word in enumerate(words):
        r = s + word % (len(items) - s)
        items[s], items[r] = items[r], items[s]
    return items[: len(words)]


def goal_pool(direct: list[set[int]], i: int) -> list[int]:
    """What agent ``i`` may have as goals: what the others know directly, minus its own."""
    others = set().union(*(d for j, d in enumerate(direct) if j != i))
    return sorted(others - direct[i])


def draw_world(cfg: GameConfig, world_key: int) -> World:
    """A world; the direct sets are redrawn until every agent has enough goals to draw."""
    c, d, g, m, na = _dims(cfg)
    values = [rng.draw(world_key, rng.VALUE, a) % m for a in range(c)]
    for attempt in range(rng.MAX_ATTEMPTS):
        direct = draw_direct_sets(cfg, world_key, attempt)
        pools = [goal_pool(direct, i) for i in range(na)]
        if all(len(pool) >= g for pool in pools):
            break
    else:
        raise RuntimeError(
            f"no world with attrs {cfg.attrs} found in {rng.MAX_ATTEMPTS} draws of the direct "
            "sets: raise attrs.count or lower attrs.goal"
        )
    goal = []
    for i in range(na):
        words = [rng.draw(world_key, rng.GOAL, i, s) for s in range(g)]
        goal.append(set(choose(pools[i], words)))
    salt = [rng.draw(world_key, rng.SALT, i) for i in range(na)]
    return World(values, direct, goal, salt)


def draw_direct_sets(cfg: GameConfig, key: int, attempt: int) -> list[set[int]]:
    """One draw of every agent's direct set."""
    c, d, _, _, na = _dims(cfg)
    direct = []
    for i in range(na):
        words = [rng.draw(key, rng.DIRECT, attempt, i, s) for s in range(d)]
        direct.append(set(choose(range(c), words)))
    return direct


def _dims(cfg: GameConfig) -> tuple[int, int, int, int, int]:
    a = cfg.attrs
    return a.count, a.direct, a.goal, a.values, cfg.n_agents


# ---------------------------------------------------------------------------------------------
# Answers (SPEC 2.3, step 1)


def answer(intention: int, known_value: int | None, lie_value: int) -> tuple[int, int] | None:
    """The answer ``(kind, value)`` an intention produces; ``None`` (nothing) for ignore.

    ``known_value`` is the value when the answerer knows the attribute, else ``None``;
    ``lie_value`` is its consistent lie (:func:`casi_sim.rng.lie`). ``value`` is -1 unless
    the kind is ``ANSWER_VALUE``.
    """
    knows = known_value is not None
    if intention == IGNORE:
        return None
    if intention == SPECIFIC_LIE:
        return (ANSWER_VALUE, lie_value)
    if intention == GENERAL_LIE:
        return (ANSWER_UNKNOWN, -1) if knows else (ANSWER_KNOWN, -1)
    if intention == INCOMPLETE_TRUTH:
        return (ANSWER_KNOWN, -1) if knows else (ANSWER_UNKNOWN, -1)
    if intention == COMPLETE_TRUTH:
        return (ANSWER_VALUE, known_value) if known_value is not None else (ANSWER_UNKNOWN, -1)
    raise ValueError(f"intention must be in [0, {N_INTENTIONS}), got {intention}")


# ---------------------------------------------------------------------------------------------
# Scripted agents (SPEC 2.6)


def scripted_action(kind: str, cfg: GameConfig, key: int, t: int, i: int) -> tuple[int, list[int]]:
    """The action ``(main, intentions)`` of a scripted agent ``i`` at step ``t``."""
    na = cfg.n_agents
    if kind == "random":
        main = rng.draw(key, rng.RANDOM_MAIN, t, i) % cfg.n_main_actions
        words = [rng.draw(key, rng.RANDOM_INTENTION, t, i, q) for q in range(na)]
        return main, [word % N_INTENTIONS for word in words]
    intention = {"honest": COMPLETE_TRUTH, "liar": SPECIFIC_LIE, "silent": IGNORE}[kind]
    return NOOP, [intention] * na


# ---------------------------------------------------------------------------------------------
# One episode (SPEC 2.3)


@dataclass
class Info:
    """What happened in one step, per agent (the ``info`` arrays of :class:`BatchSim`)."""

    na: int
    asked: list[int] = field(init=False)  # asked another agent
    asked_self: list[int] = field(init=False)  # asked itself
    answers: list[list[int]] = field(init=False)  # replies given, by intention
    unnecessary: list[int] = field(init=False)  # replies to agents that asked nothing
    guesses: list[list[int]] = field(init=False)  # guesses, by outcome
    won: list[bool] = field(init=False)  # won in this step
    own_reward: list[float] = field(init=False)  # the step reward without the prosocial term

    def __post_init__(self) -> None:
        self.asked = [0] * self.na
        self.asked_self = [0] * self.na
        self.answers = [[0] * N_INTENTIONS for _ in range(self.na)]
        self.unnecessary = [0] * self.na
        self.guesses = [[0] * N_GUESS_OUTCOMES for _ in range(self.na)]
        self.won = [False] * self.na
        self.own_reward = [0.0] * self.na


class Episode:
    """One episode of the game, advanced one step at a time."""

    def __init__(self, cfg: GameConfig, world: World, key: int) -> None:
        c, _, _, _, na = _dims(cfg)
        self.cfg = cfg
        self.world = world
        self.key = key  # the episode's key, for the scripted random agents
        self.t = 0
        self.solved: list[set[int]] = [set() for _ in range(na)]
        self.guesses = [[0] * c for _ in range(na)]
        self.won = [False] * na
        self.done = [False] * na
        # answers[(q, j, a)]: the latest answer (kind, value) that q received from j about a
        self.answers: dict[tuple[int, int, int], tuple[int, int]] = {}
        # question[q]: (j, a) if q asked j about a in the step just resolved, else None
        self.question: list[tuple[int, int] | None] = [None] * na

    def known_value(self, i: int, a: int) -> int | None:
        """``w[a]`` if agent ``i`` knows ``a`` (directly or by solving it), else ``None``."""
        if a in self.world.direct[i] or a in self.solved[i]:
            return self.world.values[a]
        return None

    def step(self, main: list[int], intentions: list[list[int]]) -> tuple[list[float], Info]:
        """Resolve one step; the actions of scripted and done agents are replaced or ignored."""
        na = self.cfg.n_agents
        main, intentions = list(main), [list(row) for row in intentions]
        for i, kind in enumerate(self.cfg.agents):
            if kind != "learner":
                main[i], intentions[i] = scripted_action(kind, self.cfg, self.key, self.t, i)
        acting = [not done for done in self.done]
        reward = [0.0] * na
        info = Info(na)
        for i in range(na):
            if acting[i]:
                self.reply(i, intentions[i], reward, info)
        questions: list[tuple[int, int] | None] = [None] * na
        for i in range(na):
            if acting[i]:
                self.act(i, main[i], questions, reward, info)
        self.question = questions
        info.own_reward = reward
        reward = self.prosocial(reward, acting)
        self.advance(info)
        return reward, info

    def reply(self, i: int, intentions: list[int], reward: list[float], info: Info) -> None:
        """Step 1: agent ``i`` answers the questions asked of it in the previous step."""
        for q, intention in enumerate(intentions):
            if q == i:
                continue  # the own slot is ignored
            asked = self.question[q]
            if asked is not None and asked[0] == i:
                a = asked[1]
                info.answers[i][intention] += 1
                known = self.known_value(i, a)
                lie = rng.lie(self.world.salt[i], q, a, self.cfg.attrs.values, known)
                reply = answer(intention, known, lie)
                if reply is not None:
                    self.answers[(q, i, a)] = reply
            elif intention != IGNORE:
                reward[i] -= self.cfg.incentives.cost_unnecessary_reply
                info.unnecessary[i] += 1

    def act(
        self,
        i: int,
        main: int,
        questions: list[tuple[int, int] | None],
        reward: list[float],
        info: Info,
    ) -> None:
        """Step 2: agent ``i``'s main action: noop, guess or ask."""
        c, m = self.cfg.attrs.count, self.cfg.attrs.values
        if main == NOOP:
            return
        if main <= c * m:
            attr, value = divmod(main - 1, m)
            self.guess(i, attr, value, reward, info)
            return
        j, attr = divmod(main - 1 - c * m, c)
        if j == i:
            reward[i] -= self.cfg.incentives.cost_ask_self_question
            info.asked_self[i] += 1
        else:
            reward[i] -= self.cfg.incentives.cost_ask_question
            info.asked[i] += 1
            questions[i] = (j, attr)

    def guess(self, i: int, a: int, v: int, reward: list[float], info: Info) -> None:
        """A guess: the first case that applies, in the order of SPEC 2.3."""
        inc = self.cfg.incentives
        if self.guesses[i][a] >= inc.max_guesses_per_attr:
            reward[i] -= inc.cost_excessive_guessing
            info.guesses[i][GUESS_EXCESSIVE] += 1
            return
        self.guesses[i][a] += 1
        if a in self.world.direct[i]:
            reward[i] -= inc.cost_known_guess
            info.guesses[i][GUESS_KNOWN] += 1
        elif a not in self.world.goal[i]:
            reward[i] -= inc.cost_non_goal_guess
            info.guesses[i][GUESS_NON_GOAL] += 1
        elif a in self.solved[i]:
            reward[i] -= inc.cost_solved_guess
            info.guesses[i][GUESS_SOLVED] += 1
        elif v == self.world.values[a]:
            reward[i] += inc.reward_correct
            self.pay_helpful_answers(i, a, reward)
            info.guesses[i][GUESS_CORRECT] += 1
            self.solved[i].add(a)
            if self.solved[i] >= self.world.goal[i]:
                reward[i] += inc.reward_win
                info.won[i] = True
        else:
            reward[i] -= inc.cost_incorrect_guess
            info.guesses[i][GUESS_INCORRECT] += 1

    def pay_helpful_answers(self, q: int, a: int, reward: list[float]) -> None:
        """``q`` has just guessed ``a`` right: every other agent not done, of any kind, whose
        latest answer to ``q`` about ``a`` is ``Value(w[a])`` earns ``reward_helpful_answer``.

        It is the answer delivered that counts, not the intention behind it, and an answer
        delivered in this very step counts too (the replies came first). It is part of the
        answerer's own step reward, so the prosocial term shares it. An agent is paid at most
        once per questioner and attribute: an attribute is guessed right once.
        """
        truth = (ANSWER_VALUE, self.world.values[a])
        for j in range(self.cfg.n_agents):
            if j != q and not self.done[j] and self.answers.get((q, j, a)) == truth:
                reward[j] += self.cfg.incentives.reward_helpful_answer

    def prosocial(self, own: list[float], acting: list[bool]) -> list[float]:
        """The prosocial term (Peysakhovich & Lerer 2018), once every reward is resolved.

        Each learner that was not done before the step earns its own step reward plus
        ``prosocial`` times the mean own step reward of the other learners (0 for one done
        before the step, which still counts in the mean). Scripted agents neither get the term
        nor enter the mean: they are part of the environment. With fewer than two learners
        nothing changes.
        """
        alpha = self.cfg.incentives.prosocial
        learners = [i for i, kind in enumerate(self.cfg.agents) if kind == "learner"]
        reward = list(own)
        if len(learners) < 2:
            return reward
        for i in learners:
            if acting[i]:
                others = [own[j] for j in learners if j != i]
                mean = sum(others) / len(others)
                reward[i] = own[i] + alpha * mean
        return reward

    def advance(self, info: Info) -> None:
        """Step 3: the counter advances; winners are done, and everyone at ``T``."""
        self.t += 1
        for i, won in enumerate(info.won):
            if won:
                self.won[i] = self.done[i] = True
        if any(info.won) and self.cfg.end_on_first_win:
            self.done = [True] * len(self.done)
        if self.t == self.cfg.max_steps:
            self.done = [True] * len(self.done)

    # -----------------------------------------------------------------------------------------
    # The observation (SPEC 2.5)

    def observe(self, i: int) -> list[float]:
        """Agent ``i``'s observation, block by block."""
        c, _, _, m, na = _dims(self.cfg)
        obs: list[float] = []
        for a in range(c):  # 1. own attributes
            obs += [
                float(a in self.world.direct[i]),
                float(a in self.world.goal[i]),
                float(a in self.solved[i]),
                self.guesses[i][a] / self.cfg.incentives.max_guesses_per_attr,
            ]
            obs += one_hot(self.known_value(i, a), m)
        for j in range(na):  # 2. answers received
            for a in range(c):
                if j == i:
                    obs += [0.0] * (CELL_FLAGS + m)
                    continue
                kind, value = self.answers.get((i, j, a), (ANSWER_NONE, -1))
                shown = value if kind == ANSWER_VALUE else None
                obs += one_hot(kind, len(ANSWER_KINDS)) + one_hot(shown, m)
        for j in range(na):  # 3. questions received this step
            asked = self.question[j]
            obs += one_hot(asked[1] if asked and asked[0] == i and j != i else None, c)
        mine = self.question[i]
        for j in range(na):  # 4. questions asked this step
            obs += one_hot(mine[1] if mine and mine[0] == j else None, c)
        obs += [self.t / self.cfg.max_steps, float(self.done[i])]  # 5. time and done
        return obs


def one_hot(index: int | None, n: int) -> list[float]:
    """``n`` zeros with a one at ``index`` (all zeros for ``None``)."""
    out = [0.0] * n
    if index is not None:
        out[index] = 1.0
    return out


# ---------------------------------------------------------------------------------------------
# A batch of episodes with the API of BatchSim


class ReferenceSim:
    """``B`` reference episodes behind the API of :class:`casi_sim.BatchSim`."""

    def __init__(self, cfg: GameConfig, batch: int, seed: int = 0) -> None:
        self.cfg = cfg
        self.batch = check_batch(batch)
        self.obs_dim = cfg.obs_dim
        self.n_main_actions = cfg.n_main_actions
        self.n_intentions = cfg.n_intentions
        self.n_agents = cfg.n_agents
        self.learners = [i for i, kind in enumerate(cfg.agents) if kind == "learner"]
        self._first_seed = check_seed(seed)
        self._seed = self._first_seed
        self._epoch = -1
        self._learner = np.array([k == "learner" for k in cfg.agents])
        self.episodes: list[Episode] = []

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episodes; a given seed restarts every random stream from that seed."""
        if seed is not None:
            self._seed, self._epoch = check_seed(seed), 0
        else:
            self._epoch += 1
        fixed_key = rng.episode_key(self._first_seed, 0, 0)
        self.episodes = []
        for b in range(self.batch):
            key = rng.episode_key(self._seed, self._epoch, b)
            world_key = fixed_key if self.cfg.init == "fixed" else key
            self.episodes.append(Episode(self.cfg, draw_world(self.cfg, world_key), key))
        return self._observe()

    def step(
        self, main: np.ndarray, intentions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if not self.episodes:
            raise RuntimeError("call reset() before step()")
        if self.episodes[0].t >= self.cfg.max_steps:
            raise RuntimeError(f"the episodes ended at t = {self.cfg.max_steps}: call reset()")
        done = np.array([ep.done for ep in self.episodes])
        acting = self._learner[None, :] & ~done
        main, intentions = as_actions(
            main, intentions, acting, self.n_main_actions, self.n_intentions
        )
        rewards, infos = [], []
        for b, ep in enumerate(self.episodes):
            reward, info = ep.step(main[b].tolist(), intentions[b].tolist())
            rewards.append(reward)
            infos.append(info)
        info_arrays = {
            "asked": np.array([x.asked for x in infos], dtype=np.int32),
            "asked_self": np.array([x.asked_self for x in infos], dtype=np.int32),
            "answers": np.array([x.answers for x in infos], dtype=np.int32),
            "unnecessary": np.array([x.unnecessary for x in infos], dtype=np.int32),
            "guesses": np.array([x.guesses for x in infos], dtype=np.int32),
            "won": np.array([x.won for x in infos], dtype=bool),
            "own_reward": np.array([x.own_reward for x in infos], dtype=np.float32),
        }
        done_now = np.array([ep.done for ep in self.episodes], dtype=bool)
        return self._observe(), np.array(rewards, dtype=np.float32), done_now, info_arrays

    def state(self) -> dict[str, np.ndarray]:
        c, na = self.cfg.attrs.count, self.cfg.n_agents

        def mask(sets: list[set[int]]) -> list[list[bool]]:
            return [[a in s for a in range(c)] for s in sets]

        eps = self.episodes
        return {
            "values": np.array([ep.world.values for ep in eps], dtype=np.int32),
            "direct": np.array([mask(ep.world.direct) for ep in eps], dtype=bool),
            "goal": np.array([mask(ep.world.goal) for ep in eps], dtype=bool),
            "solved": np.array([mask(ep.solved) for ep in eps], dtype=bool),
            "guesses": np.array([ep.guesses for ep in eps], dtype=np.int32),
            "won": np.array([ep.won for ep in eps], dtype=bool),
            "done": np.array([ep.done for ep in eps], dtype=bool),
            "t": np.array([ep.t for ep in eps], dtype=np.int32),
            "salt": np.array([ep.world.salt for ep in eps], dtype=np.uint64).reshape(-1, na),
        }

    def _observe(self) -> np.ndarray:
        na = self.cfg.n_agents
        rows = [[ep.observe(i) for i in range(na)] for ep in self.episodes]
        return np.array(rows, dtype=np.float32)
