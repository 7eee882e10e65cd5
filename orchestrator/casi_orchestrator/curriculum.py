"""A curriculum over games of one size: ``[curriculum] stages``, then the config's own game.

Each stage's game is the config's with the stage's keys laid over it (:func:`merge`:
``attrs`` and ``incentives`` key by key). The learners' models, their optimizers and the
bonus counts carry over from stage to stage, which is why a stage keeps ``obs_dim`` and the
action heads (the config refuses a stage that would change them).

A trial is in stage ``stage`` since iteration ``since``; the stage ends after an iteration
(:func:`stage_end`) when it has run its ``iterations``, or when the evaluation in its own
world (every ``eval.every`` iterations, greedy like every evaluation) gives every learning
agent a win rate >= ``until_win_rate``, whichever comes first. The evaluation that the run
reports (iterations.csv's metrics, ``eval.target_win_rate``, backtracking) is always in the
config's own game, so that runs with and without a curriculum compare; the stage's world is
evaluated only to decide when it ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casi_orchestrator.metrics import column

if TYPE_CHECKING:
    from casi_orchestrator.config import CurriculumCfg

STAGE = "stage"
STAGE_WIN_RATE = "stage_win_rate"
TABLES = ("attrs", "incentives")


def merge(game: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    """``game`` (keyword arguments of casi_sim.GameConfig) with a stage's ``keys`` laid over
    it; the tables ``attrs`` and ``incentives`` are merged key by key."""
    out = dict(game)
    for key, value in keys.items():
        base = out.get(key)
        if key in TABLES and isinstance(base, dict) and isinstance(value, dict):
            out[key] = {**base, **value}
        else:
            out[key] = value
    return out


def columns(agents: list[str]) -> list[str]:
    """The iterations.csv columns a curriculum adds (after the others)."""
    return [STAGE, *(column(name, STAGE_WIN_RATE) for name in agents)]


def stage_end(
    cur: CurriculumCfg,
    stage: int,
    since: int,
    it: int,
    win_rates: list[float | None] | None,
) -> str | None:
    """Why stage ``stage`` (run since iteration ``since``) ends after iteration ``it``, or
    None if it goes on; ``win_rates``: every learning agent's in the stage's world, if it was
    evaluated after ``it``. The config's own game (the last stage) never ends."""
    if stage >= len(cur.stages):
        return None
    spec = cur.stages[stage]
    target = spec.until_win_rate
    if target is not None and win_rates and all(r is not None and r >= target for r in win_rates):
        return f"win rate >= {target:g} in the stage's world"
    if spec.iterations is not None and it - since + 1 >= spec.iterations:
        return f"{spec.iterations} iterations"
    return None


def describe(cur: CurriculumCfg, stage: int) -> str:
    """``stage 0 (attrs.goal=1)`` / ``stage 1 (the config's game)``."""
    if stage >= len(cur.stages):
        return f"stage {stage} (the config's game)"
    keys = []
    for key, value in cur.stages[stage].game_keys().items():
        if isinstance(value, dict):
            keys += [f"{key}.{k}={v}" for k, v in value.items()]
        else:
            keys.append(f"{key}={value}")
    return f"stage {stage} ({', '.join(keys)})"
