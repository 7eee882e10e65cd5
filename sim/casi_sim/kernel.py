"""The numba kernel: B episodes in lock step on preallocated fixed-dtype arrays.

The rules are those of :mod:`casi_sim.reference` (read it first); this file is the same
logic over arrays. The tests compare the two step for step, bit for bit.

Arrays (b: episode, i/j/q: agent, a: attribute):

- ``dims`` int64 [DIMS]: C, d, g, m, na, T, max_guesses_per_attr, A, end_on_first_win;
- ``inc`` float64 [10]: incentives in the order of ``config.INCENTIVE_KEYS``;
- ``decode`` int64 [A, 3]: main action -> (NOOP | GUESS | ASK_OTHER, attr | agent, value | attr),
  a table so that the hot loop does no integer division;
- ``kinds`` int64 [na]: 0 learner, 1 random, 2 honest, 3 liar, 4 silent;
- world: ``values`` int32 [B,C], ``direct``/``goal`` bool [B,na,C], ``salt`` uint64 [B,na],
  ``ekey`` uint64 [B] (the episode key of :func:`casi_sim.rng.episode_key`);
- progress: ``solved`` bool [B,na,C], ``guesses`` int32 [B,na,C], ``won``/``done`` bool
  [B,na], ``t`` int32 [B]; ``ans_kind`` int8 / ``ans_val`` int32 [B,na(q),na(j),C] (the
  latest answer q received from j about a); ``ask_to``/``ask_attr`` int32 [B,na] (the question
  each agent asked in the step just resolved: ask_to -1 and ask_attr 0 if none);
- ``obs`` float32 [B,na,obs_dim]: the observations are state too; reset writes them whole,
  a step updates only the entries it changed (an order of magnitude less memory traffic);
- scratch: ``perm``/``pool`` int64 [C], ``acc`` float64 [na]; the kernels allocate nothing.
"""

from __future__ import annotations

import numpy as np

from casi_sim import rng
from casi_sim._flags import jit, jit_inline

C_, D_, G_, M_, NA_, T_, MAXG_, A_, EOFW_ = range(9)
DIMS = 9
(
    ASK,
    ASK_SELF,
    EXCESSIVE,
    INCORRECT,
    KNOWN_GUESS,
    NON_GOAL,
    SOLVED_GUESS,
    UNNECESSARY,
    CORRECT,
    WIN,
) = range(10)
LEARNER, RANDOM, HONEST, LIAR, SILENT = range(5)
NOOP, GUESS, ASK_OTHER = range(3)  # the first column of the decode table
KIND_CODES = {
    "learner": LEARNER,
    "random": RANDOM,
    "honest": HONEST,
    "liar": LIAR,
    "silent": SILENT,
}

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
def _draw_direct(key, attempt, direct, b, c, d, na, perm):
    for i in range(na):
        for a in range(c):
            perm[a] = a
            direct[b, i, a] = False
        for s in range(d):
            r = s + below(draw(key, _DIRECT, attempt, i, s), c - s)
            perm[s], perm[r] = perm[r], perm[s]
            direct[b, i, perm[s]] = True


@jit
def _goal_pool(direct, b, i, c, na, pool):
    n = 0
    for a in range(c):
        if direct[b, i, a]:
            continue
        for j in range(na):
            if j != i and direct[b, j, a]:
                pool[n] = a
                n += 1
                break
    return n


@jit
def _draw_world(key, dims, b, values, direct, goal, salt, perm, pool):
    c, d, g, m, na = dims[C_], dims[D_], dims[G_], dims[M_], dims[NA_]
    for a in range(c):
        values[b, a] = below(draw(key, _VALUE, a, 0, 0), m)
    ok = False
    for attempt in range(_MAX_ATTEMPTS):
        _draw_direct(key, attempt, direct, b, c, d, na, perm)
        ok = True
        for i in range(na):
            if _goal_pool(direct, b, i, c, na, pool) < g:
                ok = False
                break
        if ok:
            break
    if not ok:
        return False
    for i in range(na):
        n = _goal_pool(direct, b, i, c, na, pool)
        for a in range(c):
            goal[b, i, a] = False
        for s in range(g):
            r = s + below(draw(key, _GOAL, i, s, 0), n - s)
            pool[s], pool[r] = pool[r], pool[s]
            goal[b, i, pool[s]] = True
        salt[b, i] = draw(key, _SALT, i, 0, 0)
    return True


@jit
def reset_kernel(
    seed, epoch, first_seed, fixed, dims, perm, pool, values, direct, goal, salt, ekey, solved, guesses,
    won, done, t, ans_kind, ans_val, ask_to, ask_attr, obs,
):  # fmt: skip
    """Fresh episodes for every slot; returns the first slot whose world failed, else -1."""
    fixed_key = episode_key(first_seed, 0, 0)
    for b in range(values.shape[0]):
        key = episode_key(seed, epoch, b)
        ekey[b] = key
        world_key = fixed_key if fixed else key
        if not _draw_world(world_key, dims, b, values, direct, goal, salt, perm, pool):
            return b
    solved[:] = False
    guesses[:] = 0
    won[:] = False
    done[:] = False
    t[:] = 0
    ans_kind[:] = 0
    ans_val[:] = 0
    ask_to[:] = -1
    ask_attr[:] = 0
    for b in range(values.shape[0]):
        _observe(b, dims, values, direct, goal, solved, guesses, done, t, ans_kind, ans_val,
                 ask_to, ask_attr, obs)  # fmt: skip
    return -1


# ---------------------------------------------------------------------------------------------
# Step


@jit_inline
def _main_of(kind, b, i, tt, main, ekey, n_main):
    if kind == LEARNER:
        return main[b, i]
    if kind == RANDOM:
        return below(draw(ekey[b], _RMAIN, tt, i, 0), n_main)
    return 0


@jit_inline
def _intention_of(kind, b, i, q, tt, intentions, ekey):
    if kind == LEARNER:
        return intentions[b, i, q]
    if kind == RANDOM:
        return below(draw(ekey[b], _RINT, tt, i, q), 5)
    if kind == HONEST:
        return 4
    if kind == LIAR:
        return 1
    return 0


@jit_inline
def _answer(intention, known_value, lie_value):
    """(kind, value) of an answer, kind 0 (nothing) for ignore; as reference.answer."""
    knows = known_value >= 0
    if intention == 1:
        return 3, lie_value
    if intention == 2:
        return (1 if knows else 2), 0
    if intention == 3:
        return (2 if knows else 1), 0
    if intention == 4:
        if knows:
            return 3, known_value
        return 1, 0
    return 0, 0


@jit_inline
def _replies(b, dims, inc, kinds, tt, values, direct, solved, salt, done, ans_kind, ans_val,
             ask_to, ask_attr, intentions, ekey, acc, answers, unnecessary, obs):  # fmt: skip
    na, m = dims[NA_], dims[M_]
    for i in range(na):
        if done[b, i]:
            continue
        for q in range(na):
            if q == i:
                continue
            it = _intention_of(kinds[i], b, i, q, tt, intentions, ekey)
            if ask_to[b, q] == i:
                a = ask_attr[b, q]
                answers[b, i, it] += 1
                if it != 0:
                    known = values[b, a] if direct[b, i, a] or solved[b, i, a] else -1
                    lie_value = lie(salt[b, i], q, a, m, known) if it == 1 else 0
                    kind, value = _answer(it, known, lie_value)
                    ans_kind[b, q, i, a] = kind
                    ans_val[b, q, i, a] = value
                    _show_answer(b, q, i, a, kind, value, dims, obs)
            elif it != 0:
                acc[i] -= inc[UNNECESSARY]
                unnecessary[b, i] += 1


@jit_inline
def _show_answer(b, q, j, a, kind, value, dims, obs):
    """Block 2 of q's row: the latest answer from j about a."""
    c, w = dims[C_], 4 + dims[M_]
    p = c * w + (j * c + a) * w
    for k in range(w):
        obs[b, q, p + k] = 0.0
    obs[b, q, p + kind] = 1.0
    if kind == 3:
        obs[b, q, p + 4 + value] = 1.0


@jit_inline
def _guess(b, i, a, v, dims, inc, values, direct, goal, solved, guesses, acc, guess_out, won_now,
           obs):  # fmt: skip
    if guesses[b, i, a] >= dims[MAXG_]:
        acc[i] -= inc[EXCESSIVE]
        guess_out[b, i, 0] += 1
        return
    guesses[b, i, a] += 1
    p = a * (4 + dims[M_])
    obs[b, i, p + 3] = np.float32(guesses[b, i, a] / dims[MAXG_])
    if direct[b, i, a]:
        acc[i] -= inc[KNOWN_GUESS]
        guess_out[b, i, 1] += 1
    elif not goal[b, i, a]:
        acc[i] -= inc[NON_GOAL]
        guess_out[b, i, 2] += 1
    elif solved[b, i, a]:
        acc[i] -= inc[SOLVED_GUESS]
        guess_out[b, i, 3] += 1
    elif v == values[b, a]:
        acc[i] += inc[CORRECT]
        guess_out[b, i, 4] += 1
        solved[b, i, a] = True
        obs[b, i, p + 2] = 1.0
        obs[b, i, p + 4 + v] = 1.0
        for x in range(dims[C_]):
            if goal[b, i, x] and not solved[b, i, x]:
                return
        acc[i] += inc[WIN]
        won_now[b, i] = True
    else:
        acc[i] -= inc[INCORRECT]
        guess_out[b, i, 5] += 1


@jit_inline
def _mains(b, dims, inc, decode, kinds, tt, values, direct, goal, solved, guesses, done, ask_to,
           ask_attr, main, ekey, acc, asked, asked_self, guess_out, won_now, obs):  # fmt: skip
    na, n_main = dims[NA_], dims[A_]
    for i in range(na):
        _show_question(b, i, ask_to[b, i], ask_attr[b, i], 0.0, dims, obs)
        ask_to[b, i] = -1
        ask_attr[b, i] = 0
    for i in range(na):
        if done[b, i]:
            continue
        act = _main_of(kinds[i], b, i, tt, main, ekey, n_main)
        what, x, y = decode[act, 0], decode[act, 1], decode[act, 2]
        if what == GUESS:
            _guess(b, i, x, y, dims, inc, values, direct, goal, solved, guesses, acc, guess_out,
                   won_now, obs)  # fmt: skip
        elif what == ASK_OTHER and x == i:
            acc[i] -= inc[ASK_SELF]
            asked_self[b, i] += 1
        elif what == ASK_OTHER:
            acc[i] -= inc[ASK]
            asked[b, i] += 1
            ask_to[b, i] = x
            ask_attr[b, i] = y
            _show_question(b, i, x, y, 1.0, dims, obs)


@jit_inline
def _show_question(b, i, j, a, flag, dims, obs):
    """Blocks 3 of j's row and 4 of i's row: i asked j about a (nothing if j < 0)."""
    if j < 0:
        return
    c, na, w = dims[C_], dims[NA_], 4 + dims[M_]
    off3 = c * w + na * c * w
    obs[b, j, off3 + i * c + a] = flag
    obs[b, i, off3 + na * c + j * c + a] = flag


@jit_inline
def _advance(b, dims, t, won, done, won_now, obs):
    na = dims[NA_]
    tt = t[b] + 1
    t[b] = tt
    any_win = False
    for i in range(na):
        if won_now[b, i]:
            won[b, i] = True
            done[b, i] = True
            any_win = True
    if (any_win and dims[EOFW_] != 0) or tt == dims[T_]:
        for i in range(na):
            done[b, i] = True
    last = obs.shape[2] - 2
    time = np.float32(tt / dims[T_])
    for i in range(na):
        obs[b, i, last] = time
        obs[b, i, last + 1] = np.float32(done[b, i])


@jit
def step_kernel(
    dims, inc, decode, kinds, acc, values, direct, goal, salt, ekey, solved, guesses, won, done, t,
    ans_kind, ans_val, ask_to, ask_attr, obs, main, intentions,
    reward, done_out, asked, asked_self, answers, unnecessary, guess_out, won_now,
):  # fmt: skip
    """One step of every episode. ``obs`` is state: it is updated where the step changed it.
    The outputs (reward .. won_now) are fully overwritten."""
    na = dims[NA_]
    for b in range(values.shape[0]):
        tt = t[b]
        for i in range(na):
            acc[i] = 0.0
            asked[b, i] = 0
            asked_self[b, i] = 0
            unnecessary[b, i] = 0
            won_now[b, i] = False
            for k in range(5):
                answers[b, i, k] = 0
            for k in range(6):
                guess_out[b, i, k] = 0
        _replies(b, dims, inc, kinds, tt, values, direct, solved, salt, done, ans_kind, ans_val,
                 ask_to, ask_attr, intentions, ekey, acc, answers, unnecessary, obs)  # fmt: skip
        _mains(b, dims, inc, decode, kinds, tt, values, direct, goal, solved, guesses, done, ask_to,
               ask_attr, main, ekey, acc, asked, asked_self, guess_out, won_now, obs)  # fmt: skip
        _advance(b, dims, t, won, done, won_now, obs)
        for i in range(na):
            reward[b, i] = np.float32(acc[i])
            done_out[b, i] = done[b, i]


@jit
def observe_kernel(dims, values, direct, goal, solved, guesses, done, t, ans_kind, ans_val,
                   ask_to, ask_attr, obs):  # fmt: skip
    """Every observation written from the state alone (reset uses it; tests check that the
    step's updates leave ``obs`` equal to it)."""
    for b in range(values.shape[0]):
        _observe(b, dims, values, direct, goal, solved, guesses, done, t, ans_kind, ans_val,
                 ask_to, ask_attr, obs)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Observation (SPEC 2.5; the layout is reference.Episode.observe)


@jit_inline
def _observe(b, dims, values, direct, goal, solved, guesses, done, t, ans_kind, ans_val,
             ask_to, ask_attr, obs):  # fmt: skip
    """Agent rows of episode b. Stores are unconditional (0 or 1 into a zeroed row), so
    that random data costs no mispredicted branches."""
    c, m, na = dims[C_], dims[M_], dims[NA_]
    w = 4 + m
    off2 = c * w
    off3 = off2 + na * c * w
    off4 = off3 + na * c
    off5 = off4 + na * c
    dim = off5 + 2
    maxg = dims[MAXG_]
    time = np.float32(t[b] / dims[T_])
    for i in range(na):
        for k in range(dim):
            obs[b, i, k] = 0.0
        for a in range(c):
            p = a * w
            obs[b, i, p] = np.float32(direct[b, i, a])
            obs[b, i, p + 1] = np.float32(goal[b, i, a])
            obs[b, i, p + 2] = np.float32(solved[b, i, a])
            obs[b, i, p + 3] = np.float32(guesses[b, i, a] / maxg)
            obs[b, i, p + 4 + values[b, a]] = np.float32(direct[b, i, a] or solved[b, i, a])
        for j in range(na):
            if j == i:
                continue
            for a in range(c):
                p = off2 + (j * c + a) * w
                kind = ans_kind[b, i, j, a]
                obs[b, i, p + kind] = 1.0
                obs[b, i, p + 4 + ans_val[b, i, j, a]] = np.float32(kind == 3)
            obs[b, i, off3 + j * c + ask_attr[b, j]] = np.float32(ask_to[b, j] == i)
        to = ask_to[b, i]
        obs[b, i, off4 + max(to, 0) * c + ask_attr[b, i]] = np.float32(to >= 0)
        obs[b, i, off5] = time
        obs[b, i, off5 + 1] = np.float32(done[b, i])
