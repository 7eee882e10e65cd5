"""The numba kernel: B episodes in lock step on preallocated fixed-dtype arrays.

The rules are those of :mod:`casi_sim.reference` (read it first); this file is the same
logic over arrays. The tests compare the two step for step, bit for bit.

The kernels' arguments are the named tuples below (b: episode, i/j/q: agent, a: attribute):
:class:`Game` (a config, read only), :class:`Worlds`, :class:`Progress` and :class:`Channels`
(the state), :class:`Scratch`, :class:`Actions` (the input) and :class:`Outputs`, plus
``obs`` float32 [B, na, obs_dim]. The observations are state too: reset writes them whole, a
step updates only the entries it changed (an order of magnitude less memory traffic). The
kernels allocate nothing. The constants come from :mod:`casi_sim.actions`.

The kernels called from Python (``reset_kernel``, ``step_kernel``, ``observe_kernel``) take
each named tuple as a plain tuple (:func:`plain`): numba types a plain tuple of arrays in C
but a named one in Python, close to a microsecond more per tuple and call (seven of them cost
twice a whole step at B = 1). They name their arguments again and call the kernels that do
the work.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from casi_sim import rng
from casi_sim._flags import jit, jit_inline
from casi_sim.actions import (
    ANSWER_KNOWN,
    ANSWER_NONE,
    ANSWER_UNKNOWN,
    ANSWER_VALUE,
    CELL_DIRECT,
    CELL_FLAGS,
    CELL_GOAL,
    CELL_GUESSES,
    CELL_SOLVED,
    COMPLETE_TRUTH,
    COST_ASK,
    COST_ASK_SELF,
    COST_EXCESSIVE,
    COST_INCORRECT,
    COST_KNOWN,
    COST_NON_GOAL,
    COST_SOLVED,
    COST_UNNECESSARY,
    DO_ASK,
    DO_GUESS,
    GENERAL_LIE,
    GUESS_CORRECT,
    GUESS_EXCESSIVE,
    GUESS_INCORRECT,
    GUESS_KNOWN,
    GUESS_NON_GOAL,
    GUESS_SOLVED,
    HONEST,
    IGNORE,
    INCOMPLETE_TRUTH,
    LEARNER,
    LIAR,
    N_GUESS_OUTCOMES,
    N_INTENTIONS,
    NOOP,
    PROSOCIAL,
    RANDOM,
    REWARD_CORRECT,
    REWARD_HELPFUL,
    REWARD_WIN,
    SPECIFIC_LIE,
)


class Game(NamedTuple):
    """One config as the kernels read it."""

    c: int  # attributes C
    d: int  # direct attributes per agent
    g: int  # goal attributes per agent
    m: int  # values per attribute
    na: int  # agents
    steps: int  # steps per episode T
    max_guesses: int  # guesses per attribute before guessing it is excessive
    n_main: int  # main actions A
    end_on_first_win: bool
    fixed_world: bool  # init = fixed: every slot's world from the first seed
    incentives: np.ndarray  # float64 [len(INCENTIVE_KEYS)], in that order
    decode: np.ndarray  # int64 [A, 3]: main action -> (DO_*, attr | agent, value | attr)
    kinds: np.ndarray  # int64 [na]: KIND_CODES of the slots


class Worlds(NamedTuple):
    """The worlds of the episodes (SPEC 2.2), drawn at reset."""

    values: np.ndarray  # int32 [B, C]
    direct: np.ndarray  # bool [B, na, C]
    goal: np.ndarray  # bool [B, na, C]
    salt: np.ndarray  # uint64 [B, na]
    key: np.ndarray  # uint64 [B]: the episode key of rng.episode_key


class Progress(NamedTuple):
    """How far every agent has got."""

    solved: np.ndarray  # bool [B, na, C]
    guesses: np.ndarray  # int32 [B, na, C]
    won: np.ndarray  # bool [B, na]
    done: np.ndarray  # bool [B, na]
    t: np.ndarray  # int32 [B]


class Channels(NamedTuple):
    """What the agents told each other."""

    answer_kind: np.ndarray  # int8 [B, na(q), na(j), C]: the latest answer q got from j about a
    answer_value: np.ndarray  # int32 [B, na, na, C]
    ask_to: np.ndarray  # int32 [B, na]: whom each agent asked in the step just resolved, or -1
    ask_attr: np.ndarray  # int32 [B, na]: about what (0 if nobody)


class Scratch(NamedTuple):
    perm: np.ndarray  # int64 [C]
    pool: np.ndarray  # int64 [C]
    acc: np.ndarray  # float64 [na]: the step's rewards, summed in float64


class Actions(NamedTuple):
    main: np.ndarray  # int64 [B, na]
    intentions: np.ndarray  # int64 [B, na, na]


class Outputs(NamedTuple):
    """What a step returns, fully overwritten by it; after reward and done, the info arrays
    of ``batch.INFO_KEYS``."""

    reward: np.ndarray  # float32 [B, na]
    done: np.ndarray  # bool [B, na]
    asked: np.ndarray  # int32 [B, na]
    asked_self: np.ndarray  # int32 [B, na]
    answers: np.ndarray  # int32 [B, na, N_INTENTIONS]
    unnecessary: np.ndarray  # int32 [B, na]
    guesses: np.ndarray  # int32 [B, na, N_GUESS_OUTCOMES]
    won: np.ndarray  # bool [B, na]
    own_reward: np.ndarray  # float32 [B, na]: the reward without the prosocial term


def plain(*named: tuple[object, ...]) -> tuple[tuple[object, ...], ...]:
    """The named tuples as plain ones, for the kernels called from Python."""
    return tuple(tuple(x) for x in named)


_GOLDEN = np.uint64(rng.GOLDEN)
_MUL1 = np.uint64(rng.MUL1)
_MUL2 = np.uint64(rng.MUL2)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_VALUE, _DIRECT, _GOAL, _SALT = (np.uint64(p) for p in (rng.VALUE, rng.DIRECT, rng.GOAL, rng.SALT))
_RMAIN, _RINT = np.uint64(rng.RANDOM_MAIN), np.uint64(rng.RANDOM_INTENTION)
_MAX_ATTEMPTS = rng.MAX_ATTEMPTS


# Kernel functions carry no annotations: numba infers the types (uint64 words, int64 counters).


@jit
def mix(x):
    """The splitmix64 output function, as casi_sim.rng.mix, on uint64."""
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@jit
def episode_key(seed, epoch, b):
    return mix(mix(mix(seed) ^ np.uint64(epoch)) ^ np.uint64(b))


@jit
def draw(key, purpose, x, y, z):
    h = mix(key ^ purpose)
    h = mix(h ^ np.uint64(x))
    h = mix(h ^ np.uint64(y))
    return mix(h ^ np.uint64(z))


@jit
def below(word, n):
    """A uniform integer in [0, n) from a random word."""
    return np.int64(word % np.uint64(n))


@jit
def lie(salt, q, a, m, known_value):
    """The consistent specific lie; ``known_value`` -1 when the answerer does not know."""
    h = mix(mix(mix(salt) ^ np.uint64(q)) ^ np.uint64(a))
    if known_value < 0:
        return below(h, m)
    return (known_value + 1 + below(h, m - 1)) % m


# ---------------------------------------------------------------------------------------------
# Reset


@jit
def _draw_direct(key, attempt, game, direct, b, perm):
    for i in range(game.na):
        for a in range(game.c):
            perm[a] = a
            direct[b, i, a] = False
        for s in range(game.d):
            r = s + below(draw(key, _DIRECT, attempt, i, s), game.c - s)
            perm[s], perm[r] = perm[r], perm[s]
            direct[b, i, perm[s]] = True


@jit
def _goal_pool(game, direct, b, i, pool):
    n = 0
    for a in range(game.c):
        if direct[b, i, a]:
            continue
        for j in range(game.na):
            if j != i and direct[b, j, a]:
                pool[n] = a
                n += 1
                break
    return n


@jit
def _draw_world(key, game, worlds, b, scratch):
    for a in range(game.c):
        worlds.values[b, a] = below(draw(key, _VALUE, a, 0, 0), game.m)
    ok = False
    for attempt in range(_MAX_ATTEMPTS):
        _draw_direct(key, attempt, game, worlds.direct, b, scratch.perm)
        ok = True
        for i in range(game.na):
            if _goal_pool(game, worlds.direct, b, i, scratch.pool) < game.g:
                ok = False
                break
        if ok:
            break
    if not ok:
        return False
    pool = scratch.pool
    for i in range(game.na):
        n = _goal_pool(game, worlds.direct, b, i, pool)
        for a in range(game.c):
            worlds.goal[b, i, a] = False
        for s in range(game.g):
            r = s + below(draw(key, _GOAL, i, s, 0), n - s)
            pool[s], pool[r] = pool[r], pool[s]
            worlds.goal[b, i, pool[s]] = True
        worlds.salt[b, i] = draw(key, _SALT, i, 0, 0)
    return True


@jit
def reset_kernel(game, worlds, progress, channels, scratch, obs, seed, epoch, first_seed):
    """Fresh episodes for every slot; returns the first slot whose world failed, else -1.
    The first five arguments are plain tuples (see the module's docstring)."""
    return _reset(
        Game(*game), Worlds(*worlds), Progress(*progress), Channels(*channels), Scratch(*scratch),
        obs, seed, epoch, first_seed,
    )  # fmt: skip


@jit_inline
def _reset(game, worlds, progress, channels, scratch, obs, seed, epoch, first_seed):
    fixed_key = episode_key(first_seed, 0, 0)
    for b in range(worlds.values.shape[0]):
        key = episode_key(seed, epoch, b)
        worlds.key[b] = key
        world_key = fixed_key if game.fixed_world else key
        if not _draw_world(world_key, game, worlds, b, scratch):
            return b
    progress.solved[:] = False
    progress.guesses[:] = 0
    progress.won[:] = False
    progress.done[:] = False
    progress.t[:] = 0
    channels.answer_kind[:] = ANSWER_NONE
    channels.answer_value[:] = 0
    channels.ask_to[:] = -1
    channels.ask_attr[:] = 0
    _observe_all(game, worlds, progress, channels, obs)
    return -1


# ---------------------------------------------------------------------------------------------
# Step


@jit_inline
def _main_of(kind, b, i, tt, actions, worlds, game):
    if kind == LEARNER:
        return actions.main[b, i]
    if kind == RANDOM:
        return below(draw(worlds.key[b], _RMAIN, tt, i, 0), game.n_main)
    return NOOP


@jit_inline
def _intention_of(kind, b, i, q, tt, actions, worlds):
    if kind == LEARNER:
        return actions.intentions[b, i, q]
    if kind == RANDOM:
        return below(draw(worlds.key[b], _RINT, tt, i, q), N_INTENTIONS)
    if kind == HONEST:
        return COMPLETE_TRUTH
    if kind == LIAR:
        return SPECIFIC_LIE
    return IGNORE


@jit_inline
def _answer(intention, known_value, lie_value):
    """(kind, value) of an answer, kind ANSWER_NONE for ignore; as reference.answer."""
    knows = known_value >= 0
    if intention == SPECIFIC_LIE:
        return ANSWER_VALUE, lie_value
    if intention == GENERAL_LIE:
        return (ANSWER_UNKNOWN if knows else ANSWER_KNOWN), 0
    if intention == INCOMPLETE_TRUTH:
        return (ANSWER_KNOWN if knows else ANSWER_UNKNOWN), 0
    if intention == COMPLETE_TRUTH:
        if knows:
            return ANSWER_VALUE, known_value
        return ANSWER_UNKNOWN, 0
    return ANSWER_NONE, 0


@jit_inline
def _replies(b, tt, game, worlds, progress, channels, actions, acc, out, obs):
    inc = game.incentives
    for i in range(game.na):
        if progress.done[b, i]:
            continue
        for q in range(game.na):
            if q == i:
                continue
            it = _intention_of(game.kinds[i], b, i, q, tt, actions, worlds)
            if channels.ask_to[b, q] == i:
                a = channels.ask_attr[b, q]
                out.answers[b, i, it] += 1
                if it != IGNORE:
                    knows = worlds.direct[b, i, a] or progress.solved[b, i, a]
                    known = worlds.values[b, a] if knows else -1
                    lie_value = (
                        lie(worlds.salt[b, i], q, a, game.m, known) if it == SPECIFIC_LIE else 0
                    )
                    kind, value = _answer(it, known, lie_value)
                    channels.answer_kind[b, q, i, a] = kind
                    channels.answer_value[b, q, i, a] = value
                    _show_answer(b, q, i, a, kind, value, game, obs)
            elif it != IGNORE:
                acc[i] -= inc[COST_UNNECESSARY]
                out.unnecessary[b, i] += 1


@jit_inline
def _show_answer(b, q, j, a, kind, value, game, obs):
    """Block 2 of q's row: the latest answer from j about a."""
    c, w = game.c, CELL_FLAGS + game.m
    p = c * w + (j * c + a) * w
    for k in range(w):
        obs[b, q, p + k] = 0.0
    obs[b, q, p + kind] = 1.0
    if kind == ANSWER_VALUE:
        obs[b, q, p + CELL_FLAGS + value] = 1.0


@jit_inline
def _guess(b, i, a, v, game, worlds, progress, channels, acc, out, obs):
    inc, guesses, count = game.incentives, progress.guesses, out.guesses
    if guesses[b, i, a] >= game.max_guesses:
        acc[i] -= inc[COST_EXCESSIVE]
        count[b, i, GUESS_EXCESSIVE] += 1
        return
    guesses[b, i, a] += 1
    p = a * (CELL_FLAGS + game.m)
    obs[b, i, p + CELL_GUESSES] = np.float32(guesses[b, i, a] / game.max_guesses)
    if worlds.direct[b, i, a]:
        acc[i] -= inc[COST_KNOWN]
        count[b, i, GUESS_KNOWN] += 1
    elif not worlds.goal[b, i, a]:
        acc[i] -= inc[COST_NON_GOAL]
        count[b, i, GUESS_NON_GOAL] += 1
    elif progress.solved[b, i, a]:
        acc[i] -= inc[COST_SOLVED]
        count[b, i, GUESS_SOLVED] += 1
    elif v == worlds.values[b, a]:
        acc[i] += inc[REWARD_CORRECT]
        if inc[REWARD_HELPFUL] > 0:
            _pay_helpful_answers(b, i, a, game, worlds, progress, channels, acc)
        count[b, i, GUESS_CORRECT] += 1
        progress.solved[b, i, a] = True
        obs[b, i, p + CELL_SOLVED] = 1.0
        obs[b, i, p + CELL_FLAGS + v] = 1.0
        for x in range(game.c):
            if worlds.goal[b, i, x] and not progress.solved[b, i, x]:
                return
        acc[i] += inc[REWARD_WIN]
        out.won[b, i] = True
    else:
        acc[i] -= inc[COST_INCORRECT]
        count[b, i, GUESS_INCORRECT] += 1


@jit_inline
def _pay_helpful_answers(b, q, a, game, worlds, progress, channels, acc):
    """q has guessed a right; as reference.Episode.pay_helpful_answers."""
    kind, value = channels.answer_kind, channels.answer_value
    for j in range(game.na):
        if j == q or progress.done[b, j]:
            continue
        if kind[b, q, j, a] == ANSWER_VALUE and value[b, q, j, a] == worlds.values[b, a]:
            acc[j] += game.incentives[REWARD_HELPFUL]


@jit_inline
def _mains(b, tt, game, worlds, progress, channels, actions, acc, out, obs):
    inc, decode, ask_to, ask_attr = game.incentives, game.decode, channels.ask_to, channels.ask_attr
    for i in range(game.na):
        _show_question(b, i, ask_to[b, i], ask_attr[b, i], 0.0, game, obs)
        ask_to[b, i] = -1
        ask_attr[b, i] = 0
    for i in range(game.na):
        if progress.done[b, i]:
            continue
        act = _main_of(game.kinds[i], b, i, tt, actions, worlds, game)
        what, x, y = decode[act, 0], decode[act, 1], decode[act, 2]
        if what == DO_GUESS:
            _guess(b, i, x, y, game, worlds, progress, channels, acc, out, obs)
        elif what == DO_ASK and x == i:
            acc[i] -= inc[COST_ASK_SELF]
            out.asked_self[b, i] += 1
        elif what == DO_ASK:
            acc[i] -= inc[COST_ASK]
            out.asked[b, i] += 1
            ask_to[b, i] = x
            ask_attr[b, i] = y
            _show_question(b, i, x, y, 1.0, game, obs)


@jit_inline
def _show_question(b, i, j, a, flag, game, obs):
    """Blocks 3 of j's row and 4 of i's row: i asked j about a (nothing if j < 0)."""
    if j < 0:
        return
    c, na, w = game.c, game.na, CELL_FLAGS + game.m
    off3 = c * w + na * c * w
    obs[b, j, off3 + i * c + a] = flag
    obs[b, i, off3 + na * c + j * c + a] = flag


@jit_inline
def _prosocial(b, game, progress, acc, out):
    """The prosocial term over the own rewards in acc; as reference.Episode.prosocial. Called
    before _advance, so that done is as it was before the step."""
    alpha, kinds = game.incentives[PROSOCIAL], game.kinds
    learners = 0
    for j in range(game.na):
        if kinds[j] == LEARNER:
            learners += 1
    if learners < 2:
        return
    for i in range(game.na):
        if kinds[i] != LEARNER or progress.done[b, i]:
            continue
        others = 0.0
        for j in range(game.na):
            if j != i and kinds[j] == LEARNER:
                others += acc[j]
        out.reward[b, i] = np.float32(acc[i] + alpha * (others / (learners - 1)))


@jit_inline
def _advance(b, game, progress, out, obs):
    won, done = progress.won, progress.done
    tt = progress.t[b] + 1
    progress.t[b] = tt
    any_win = False
    for i in range(game.na):
        if out.won[b, i]:
            won[b, i] = True
            done[b, i] = True
            any_win = True
    if (any_win and game.end_on_first_win) or tt == game.steps:
        for i in range(game.na):
            done[b, i] = True
    last = obs.shape[2] - 2
    time = np.float32(tt / game.steps)
    for i in range(game.na):
        obs[b, i, last] = time
        obs[b, i, last + 1] = np.float32(done[b, i])
        out.done[b, i] = done[b, i]


@jit
def step_kernel(game, worlds, progress, channels, scratch, obs, actions, out):
    """One step of every episode. ``obs`` is state: it is updated where the step changed it.
    The outputs are fully overwritten. Every argument but ``obs`` is a plain tuple (see the
    module's docstring)."""
    _step(
        Game(*game), Worlds(*worlds), Progress(*progress), Channels(*channels), Scratch(*scratch),
        obs, Actions(*actions), Outputs(*out),
    )  # fmt: skip


@jit_inline
def _step(game, worlds, progress, channels, scratch, obs, actions, out):
    acc = scratch.acc
    for b in range(worlds.values.shape[0]):
        tt = progress.t[b]
        for i in range(game.na):
            acc[i] = 0.0
            out.asked[b, i] = 0
            out.asked_self[b, i] = 0
            out.unnecessary[b, i] = 0
            out.won[b, i] = False
            for k in range(N_INTENTIONS):
                out.answers[b, i, k] = 0
            for k in range(N_GUESS_OUTCOMES):
                out.guesses[b, i, k] = 0
        _replies(b, tt, game, worlds, progress, channels, actions, acc, out, obs)
        _mains(b, tt, game, worlds, progress, channels, actions, acc, out, obs)
        for i in range(game.na):
            out.own_reward[b, i] = np.float32(acc[i])
            out.reward[b, i] = np.float32(acc[i])
        if game.incentives[PROSOCIAL] > 0:
            _prosocial(b, game, progress, acc, out)
        _advance(b, game, progress, out, obs)


@jit
def observe_kernel(game, worlds, progress, channels, obs):
    """Every observation written from the state alone (reset uses it; tests check that the
    step's updates leave ``obs`` equal to it). The first four arguments are plain tuples."""
    _observe_all(Game(*game), Worlds(*worlds), Progress(*progress), Channels(*channels), obs)


@jit_inline
def _observe_all(game, worlds, progress, channels, obs):
    for b in range(worlds.values.shape[0]):
        _observe(b, game, worlds, progress, channels, obs)


# ---------------------------------------------------------------------------------------------
# Observation (SPEC 2.5; the layout is reference.Episode.observe)


@jit_inline
def _observe(b, game, worlds, progress, channels, obs):
    """Agent rows of episode b. Stores are unconditional (0 or 1 into a zeroed row), so
    that random data costs no mispredicted branches."""
    c, m, na = game.c, game.m, game.na
    w = CELL_FLAGS + m
    off2 = c * w
    off3 = off2 + na * c * w
    off4 = off3 + na * c
    off5 = off4 + na * c
    dim = off5 + 2
    values, direct, goal = worlds.values, worlds.direct, worlds.goal
    solved, guesses = progress.solved, progress.guesses
    answer_kind, answer_value = channels.answer_kind, channels.answer_value
    ask_to, ask_attr = channels.ask_to, channels.ask_attr
    time = np.float32(progress.t[b] / game.steps)
    for i in range(na):
        for k in range(dim):
            obs[b, i, k] = 0.0
        for a in range(c):
            p = a * w
            obs[b, i, p + CELL_DIRECT] = np.float32(direct[b, i, a])
            obs[b, i, p + CELL_GOAL] = np.float32(goal[b, i, a])
            obs[b, i, p + CELL_SOLVED] = np.float32(solved[b, i, a])
            obs[b, i, p + CELL_GUESSES] = np.float32(guesses[b, i, a] / game.max_guesses)
            known = direct[b, i, a] or solved[b, i, a]
            obs[b, i, p + CELL_FLAGS + values[b, a]] = np.float32(known)
        for j in range(na):
            if j == i:
                continue
            for a in range(c):
                p = off2 + (j * c + a) * w
                kind = answer_kind[b, i, j, a]
                obs[b, i, p + kind] = 1.0
                value_shown = np.float32(kind == ANSWER_VALUE)
                obs[b, i, p + CELL_FLAGS + answer_value[b, i, j, a]] = value_shown
            obs[b, i, off3 + j * c + ask_attr[b, j]] = np.float32(ask_to[b, j] == i)
        to = ask_to[b, i]
        obs[b, i, off4 + max(to, 0) * c + ask_attr[b, i]] = np.float32(to >= 0)
        obs[b, i, off5] = time
        obs[b, i, off5 + 1] = np.float32(progress.done[b, i])
