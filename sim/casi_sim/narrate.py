"""One step of an episode in words: who asks whom about what, the intention chosen, the
answer delivered, the guesses and their outcome, the rewards and the wins.

:func:`step` is ``BatchSim.step`` that also returns, per episode, a :class:`Turn`: what every
slot did in that step, scripted slots included (their actions are those of
:func:`casi_sim.reference.scripted_action`), the answers delivered and what the game made of
the guesses. A ``Turn`` is plain data (``dataclasses.asdict`` makes it JSON); :func:`lines`
and :func:`text` put it into words, :func:`world_lines` the world of an episode::

    from casi_sim import narrate

    obs = sim.reset(seed)
    print("\\n".join(narrate.world_lines(sim.cfg, sim.state(), 0, names)))
    obs, reward, done, info, turns = narrate.step(sim, main, intentions)
    print(narrate.text(sim.cfg, turns[0], names))  # "step 1\\n  alice asks bob about attr 2"

``names`` are the agents' names by slot (default ``a0``, ``a1``, ...). Nothing here changes
the simulator's state or its random streams: a game stepped through :func:`step` plays as one
stepped through ``sim.step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from casi_sim.actions import (
    ANSWER_KNOWN,
    ANSWER_NONE,
    ANSWER_UNKNOWN,
    ANSWER_VALUE,
    GUESS_CORRECT,
    GUESS_EXCESSIVE,
    GUESS_INCORRECT,
    GUESS_KNOWN,
    GUESS_NON_GOAL,
    GUESS_SOLVED,
    IGNORE,
    INTENTION_NAMES,
    NOOP,
)
from casi_sim.batch import BatchSim
from casi_sim.config import GameConfig
from casi_sim.reference import scripted_action

__all__ = ["Before", "Turn", "before_step", "lines", "record", "step", "text", "world_lines"]


@dataclass(frozen=True)
class Turn:
    """What happened in one step of one episode, by agent slot."""

    step: int  # 1-based number of the step
    kinds: list[str]  # the kind of every slot
    acting: list[bool]  # not done before the step: the others did nothing
    main: list[int]  # the main action played (scripted slots filled in)
    intentions: list[list[int]]  # [i][q]: i's intention towards q
    questions: list[list[int] | None]  # the (addressee, attr) each slot asked a step before
    answers: list[list[int] | None]  # the (answer kind, value) delivered to each slot, or None
    answerer_knew: list[bool]  # whether the addressee of each slot's question knew the attr
    values: list[int]  # the world's true values
    guess: list[int | None]  # the outcome (GUESS_OUTCOMES) of each slot's guess, or None
    reward: list[float]  # the step reward
    own_reward: list[float]  # the step reward without the prosocial share of the others'
    won: list[bool]  # won in this step
    done: list[bool]  # done after the step


class Before(NamedTuple):
    """The parts of the simulator's state a step reads, copied just before it."""

    t: np.ndarray  # int [B]
    done: np.ndarray  # bool [B, na]
    known: np.ndarray  # bool [B, na, C]
    ask_to: np.ndarray  # int [B, na]: whom each slot asked in the step before, or -1
    ask_attr: np.ndarray  # int [B, na]
    key: np.ndarray  # uint64 [B]: the episode keys (the scripted random agents' stream)


class After(NamedTuple):
    """The state and the channels right after a step (:meth:`BatchSim.state`, ``channels``)."""

    state: dict[str, np.ndarray]
    channels: dict[str, np.ndarray]


def before_step(sim: BatchSim) -> Before:
    """What :func:`record` needs to know from before a step."""
    state, channels = sim.state(), sim.channels()
    return Before(
        t=state["t"],
        done=state["done"],
        known=state["direct"] | state["solved"],
        ask_to=channels["ask_to"],
        ask_attr=channels["ask_attr"],
        key=channels["key"],
    )


def step(
    sim: BatchSim, main: np.ndarray, intentions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], list[Turn]]:
    """``sim.step(main, intentions)``, plus the :class:`Turn` of every episode."""
    before = before_step(sim)
    obs, reward, done, info = sim.step(main, intentions)
    after = After(sim.state(), sim.channels())
    turns = [
        record(sim.cfg, before, after, main, intentions, reward, info, b) for b in range(sim.batch)
    ]
    return obs, reward, done, info, turns


def record(
    cfg: GameConfig,
    before: Before,
    after: After,
    main: np.ndarray,
    intentions: np.ndarray,
    reward: np.ndarray,
    info: dict[str, np.ndarray],
    b: int,
) -> Turn:
    """The :class:`Turn` of episode ``b`` of the step that followed :func:`before_step`."""
    na = cfg.n_agents
    t = int(before.t[b])
    played_main, played_intentions = [], []
    for i, kind in enumerate(cfg.agents):
        if kind == "learner":
            played_main.append(int(main[b, i]))
            played_intentions.append([int(x) for x in intentions[b, i]])
        else:
            m, its = scripted_action(kind, cfg, int(before.key[b]), t, i)
            played_main.append(int(m))
            played_intentions.append([int(x) for x in its])
    questions: list[list[int] | None] = []
    answers: list[list[int] | None] = []
    knew = []
    for q in range(na):
        j, a = int(before.ask_to[b, q]), int(before.ask_attr[b, q])
        if j < 0:
            questions.append(None)
            answers.append(None)
            knew.append(False)
            continue
        questions.append([j, a])
        knew.append(bool(before.known[b, j, a]))
        delivered = not before.done[b, j] and played_intentions[j][q] != IGNORE
        said = int(after.channels["answer_kind"][b, q, j, a])
        value = int(after.channels["answer_value"][b, q, j, a])
        answers.append([said, value] if delivered and said != ANSWER_NONE else None)
    guesses = info["guesses"][b]
    return Turn(
        step=t + 1,
        kinds=list(cfg.agents),
        acting=[not bool(x) for x in before.done[b]],
        main=played_main,
        intentions=played_intentions,
        questions=questions,
        answers=answers,
        answerer_knew=knew,
        values=[int(v) for v in after.state["values"][b]],
        guess=[int(np.argmax(g)) if g.any() else None for g in guesses],
        reward=[float(r) for r in reward[b]],
        own_reward=[float(r) for r in info["own_reward"][b]],
        won=[bool(w) for w in info["won"][b]],
        done=[bool(d) for d in after.state["done"][b]],
    )


# ---------------------------------------------------------------------------------------------
# Words


def default_names(cfg: GameConfig) -> list[str]:
    return [f"a{i}" for i in range(cfg.n_agents)]


def attr(a: int) -> str:
    return f"attr {a}"


def intention_words(intention: int) -> str:
    """``specific_lie`` -> ``specific lie``."""
    return INTENTION_NAMES[intention].replace("_", " ")


def answer_words(kind: int, value: int) -> str:
    """What an answer says, in the answerer's voice."""
    if kind == ANSWER_VALUE:
        return f'"it is {value}"'
    if kind == ANSWER_KNOWN:
        return '"I know it"'
    if kind == ANSWER_UNKNOWN:
        return '"I don\'t know"'
    return "nothing"


def lines(cfg: GameConfig, turn: Turn, names: list[str] | None = None) -> list[str]:
    """The step in words, in the order it resolves: replies, main actions, wins, rewards."""
    names = names or default_names(cfg)
    out = []
    for q in range(cfg.n_agents):
        out += _reply_lines(turn, q, names)
    for i in range(cfg.n_agents):
        out += _unnecessary_lines(turn, i, names)
    for i in range(cfg.n_agents):
        if turn.acting[i]:
            out += _main_lines(cfg, turn, i, names)
    for i in range(cfg.n_agents):
        if turn.won[i]:
            out.append(f"{names[i]} has solved all its goals and wins")
    rewards = [_reward_words(turn, i, names) for i in range(cfg.n_agents) if turn.acting[i]]
    out.append("rewards: " + ", ".join(rewards))
    return out


def _reward_words(turn: Turn, i: int, names: list[str]) -> str:
    words = f"{names[i]} {turn.reward[i]:+g}"
    if turn.own_reward[i] != turn.reward[i]:
        words += f" (own {turn.own_reward[i]:+g})"
    return words


def text(cfg: GameConfig, turn: Turn, names: list[str] | None = None) -> str:
    """``step N`` and the step's :func:`lines`, indented by two spaces."""
    return "\n".join([f"step {turn.step}", *("  " + line for line in lines(cfg, turn, names))])


def _reply_lines(turn: Turn, q: int, names: list[str]) -> list[str]:
    """The answer to the question ``q`` asked a step before, if it asked one."""
    asked = turn.questions[q]
    if asked is None:
        return []
    j, a = asked
    who, asker = names[j], names[q]
    if not turn.acting[j]:
        return [f"{asker}'s question to {who} about {attr(a)} goes unanswered: {who} is done"]
    answer = turn.answers[q]
    if answer is None:
        return [f"{who} ignores {asker}'s question about {attr(a)}"]
    why = intention_words(turn.intentions[j][q])
    kind, value = answer
    knew, truth = turn.answerer_knew[q], turn.values[a]
    if kind == ANSWER_VALUE and value != truth:
        why += f"; it is {truth}"
    elif kind == ANSWER_UNKNOWN and knew:
        why += f"; {who} knows it"
    elif kind == ANSWER_KNOWN and not knew:
        why += f"; {who} does not know it"
    return [f"{who} answers {asker} about {attr(a)}: {answer_words(kind, value)} ({why})"]


def _unnecessary_lines(turn: Turn, i: int, names: list[str]) -> list[str]:
    """The replies of ``i`` to agents that asked it nothing (each one costs)."""
    if not turn.acting[i]:
        return []
    told = []
    for q, intention in enumerate(turn.intentions[i]):
        asked = turn.questions[q]
        if q == i or intention == IGNORE or (asked is not None and asked[0] == i):
            continue
        told.append(f"{names[q]} ({intention_words(intention)})")
    if not told:
        return []
    return [f"{names[i]} replies to agents that asked it nothing: {', '.join(told)}"]


def _main_lines(cfg: GameConfig, turn: Turn, i: int, names: list[str]) -> list[str]:
    c, m = cfg.attrs.count, cfg.attrs.values
    who, action = names[i], turn.main[i]
    if action == NOOP:
        return [f"{who} waits"] if turn.kinds[i] == "learner" else []
    if action <= c * m:
        a, v = divmod(action - 1, m)
        return [f"{who} guesses {attr(a)} = {v}: {_outcome(turn, i, a)}"]
    j, a = divmod(action - 1 - c * m, c)
    if j == i:
        return [f"{who} asks itself about {attr(a)} (a question to oneself costs)"]
    return [f"{who} asks {names[j]} about {attr(a)}"]


def _outcome(turn: Turn, i: int, a: int) -> str:
    outcome = turn.guess[i]
    if outcome == GUESS_CORRECT:
        return "correct"
    if outcome == GUESS_INCORRECT:
        return f"wrong (it is {turn.values[a]})"
    if outcome == GUESS_EXCESSIVE:
        return f"no guesses left for {attr(a)}"
    if outcome == GUESS_KNOWN:
        return f"it knows {attr(a)} already"
    if outcome == GUESS_NON_GOAL:
        return f"{attr(a)} is not one of its goals"
    if outcome == GUESS_SOLVED:
        return f"{attr(a)} is solved already"
    return "no outcome"


def world_lines(
    cfg: GameConfig, state: dict[str, np.ndarray], b: int, names: list[str] | None = None
) -> list[str]:
    """Episode ``b``'s world (from ``sim.state()``): the true values, and every agent's
    direct attributes and goals."""
    names = names or default_names(cfg)
    values = state["values"][b]
    out = ["world: " + ", ".join(f"{attr(a)} = {int(v)}" for a, v in enumerate(values))]
    for i, kind in enumerate(cfg.agents):
        direct = ", ".join(attr(int(a)) for a in np.flatnonzero(state["direct"][b, i]))
        goal = ", ".join(attr(int(a)) for a in np.flatnonzero(state["goal"][b, i]))
        out.append(f"{names[i]} ({kind}) knows {direct}; must find {goal}")
    return out
