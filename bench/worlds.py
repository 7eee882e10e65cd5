"""How the cost of learning grows with the world: agent-steps to 90% greedy win rate per world.

Every world is ``experiments/exp5_big_honest.toml`` (its algorithm, exploration, evaluation
and ``max_steps``) with other ``attrs`` or partners; each run is ``bench/learn.py``'s
``casi run --target-win-rate`` in a fresh process, capped at ``--iterations`` (a run that is
not at the target by then counts as "not reached", with its best win rate). The worlds grow
along one axis at a time from exp5's: attributes, goals, values, partners.

``--settings NAME:KEY=VALUE[,KEY=VALUE]`` changes exp5's settings for every world (e.g.
``masked:algorithm.mask_pointless=true``); the default is exp5's own, named ``exp5``.

Prints a table and writes ``bench/results/worlds-<settings>.json``, then
``bench/results/worlds.png`` from every such file (agent-steps to the target against the number
of main actions, one point per run, one colour per settings).
Run: ``.venv/bin/python bench/worlds.py [--seeds 0] [--iterations 1500] [--worlds NAME ...]
[--settings NAME:KEY=VALUE]``
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from casi_proto.sizes import game_head_sizes
from common import RESULTS, ROOT, median, write_results
from learn import parse_variant, run_once, write_config

EXP5 = ROOT / "experiments" / "exp5_big_honest.toml"
PLOT = RESULTS / "worlds.png"

# name: (count, direct, goal, values, scripted partners)
WORLDS: dict[str, tuple[int, int, int, int, tuple[str, ...]]] = {
    "exp2 world": (4, 2, 1, 4, ("honest",)),
    "exp5 world": (6, 3, 2, 4, ("honest",)),
    "8 values": (6, 3, 2, 8, ("honest",)),
    "8 attributes": (8, 4, 2, 4, ("honest",)),
    "3 goals": (8, 4, 3, 4, ("honest",)),
    "2 partners": (6, 3, 2, 4, ("honest", "honest")),
    "10 attributes": (10, 5, 2, 4, ("honest",)),
    "3 partners": (6, 3, 2, 4, ("honest", "honest", "honest")),
    "8 attrs, 8 values": (8, 4, 2, 8, ("honest",)),
    "12 attributes": (12, 6, 2, 4, ("honest",)),
    "4 goals": (10, 5, 4, 4, ("honest",)),
    "16 attributes": (16, 8, 2, 4, ("honest",)),
    "12 attrs, 3 goals, 8 values": (12, 6, 3, 8, ("honest",)),
    "16 values": (6, 3, 2, 16, ("honest",)),
    "24 attrs, 4 goals, 8 values": (24, 12, 4, 8, ("honest",)),
    "32 values": (6, 3, 2, 32, ("honest",)),
    # beyond what the mlp learns within 20M agent-steps (measured with model = "slots")
    "64 values": (6, 3, 2, 64, ("honest",)),
    "128 values": (6, 3, 2, 128, ("honest",)),
    "32 attributes": (32, 16, 2, 4, ("honest",)),
    "64 attributes": (64, 32, 2, 4, ("honest",)),
    "6 partners": (6, 3, 2, 4, ("honest",) * 6),
    "24 attrs, 4 goals, 32 values": (24, 12, 4, 32, ("honest",)),
    "256 values": (6, 3, 2, 256, ("honest",)),
    "15 partners": (6, 3, 2, 4, ("honest",) * 15),
    "32 attrs, 4 goals, 128 values": (32, 16, 4, 128, ("honest",)),
}


def keys(world: tuple[int, int, int, int, tuple[str, ...]]) -> dict[str, Any]:
    count, direct, goal, values, partners = world
    return {
        "agents": ["learner", *partners],
        "attrs": {"count": count, "direct": direct, "goal": goal, "values": values},
    }


def kept_rows(settings: str, rerun: list[str]) -> list[dict[str, Any]]:
    """The runs of earlier invocations with these settings, for the worlds not run again."""
    path = RESULTS / f"worlds-{settings}.json"
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["runs"] if r["world"] not in rerun]


def plot() -> None:
    """Every ``worlds-*.json``: a point per run, a colour per settings; ▲: not reached (at the
    agent-steps of the cap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for colour, path in enumerate(sorted(RESULTS.glob("worlds-*.json"))):
        rows = json.loads(path.read_text())["runs"]
        for r in rows:
            y = r["agent_steps"] if r["reached"] else r["cap_agent_steps"]
            ax.scatter(r["actions"], y, marker="o" if r["reached"] else "^", color=f"C{colour}")
            ax.annotate(r["world"], (r["actions"], y), fontsize=6, xytext=(4, 2),
                        textcoords="offset points")  # fmt: skip
        ax.scatter([], [], color=f"C{colour}", label=path.stem.removeprefix("worlds-"))
    ax.legend(fontsize=8)
    ax.set_xlabel("main actions (1 + C·m + na·C)")
    ax.set_ylabel("agent-steps to greedy win rate 0.9")
    ax.set_yscale("log")
    ax.set_title("one learner per world (▲: not reached within the cap)", fontsize=9)
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iterations", type=int, default=1500, help="cap per run")
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--settings", type=parse_variant, default=("exp5", {}))
    args = parser.parse_args()
    settings, changes = args.settings
    rows = []
    print(
        f"{'world':<15}{'C/d/g/m':>9}{'agents':>7}{'actions':>8}{'seed':>5}{'reached':>8}"
        f"{'iter':>6}{'agent-steps':>13}{'best win':>9}{'wall s':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.worlds:
            world = WORLDS[name]
            count, direct, goal, values, partners = world
            for seed in args.seeds:
                folder = Path(tmp) / f"{name.replace(' ', '_')}-{seed}"
                folder.mkdir()
                config = write_config(folder, EXP5, {**keys(world), **changes})
                r = run_once(config, seed, args.target, folder / "runs", args.iterations)
                per_iteration = r["agent_steps"] / r["iteration"]
                row = {
                    "world": name,
                    "attrs": [count, direct, goal, values],
                    "partners": list(partners),
                    "actions": game_head_sizes(count, values, 1 + len(partners))[0],
                    "cap_agent_steps": round(per_iteration * args.iterations),
                    **r,
                }
                rows.append(row)
                save(settings, changes, args, kept_rows(settings, args.worlds) + rows)
                print(
                    f"{name:<15}{f'{count}/{direct}/{goal}/{values}':>9}{1 + len(partners):>7}"
                    f"{row['actions']:>8}{seed:>5}{'yes' if r['reached'] else 'NO':>8}"
                    f"{r['iteration']:>6}{r['agent_steps']:>13,}{r['best_win_rate']:>9.3f}"
                    f"{r['wall_s']:>8.1f}",
                    flush=True,
                )
    plot()


def save(settings: str, changes: dict[str, Any], args: argparse.Namespace, rows: list) -> None:
    """``worlds-<settings>.json`` with ``rows``: written after every run, so that a sweep
    stopped half-way keeps the worlds it measured."""
    medians = {
        name: median(
            [r["agent_steps"] if r["reached"] else math.inf for r in rows if r["world"] == name]
        )
        for name in dict.fromkeys(r["world"] for r in rows)
    }
    write_results(
        f"worlds-{settings}",
        {
            "config": f"{EXP5} per world",
            "settings": changes,
            "target_win_rate": args.target,
            "iterations_cap": args.iterations,
            "runs": rows,
            "median": medians,
        },
    )


if __name__ == "__main__":
    main()
