"""``casi play``: trained learners play a few episodes, told step by step in words.

The path is a run folder (``runs/<exp>``: its ``trial-0``), a trial folder
(``runs/<exp>/trial-<k>``) or a trial's ``checkpoint`` folder. The trial's ``config.toml``
gives the game and the learners; the checkpoint (read and verified as ``casi run --resume``
reads it) gives their parameters. Learners are started locally as ``casi run`` starts them,
or used at ``--learner NAME=HOST:PORT``; each is Init-ed and given its parameters by SetParams.

The episodes are the evaluation's: by default the first ``--episodes`` of the episodes the
trial was evaluated on (same world seed, same episode seed), played greedily (the argmax of
every head) among the actions that are not pointless when ``algorithm.mask_pointless`` is on,
as evaluation plays them; ``--seed S`` plays other episodes, ``--sample`` samples the actions.
Each episode is printed in words (:mod:`casi_sim.narrate`), then a who-asks-whom summary;
``--html FILE`` writes the same episodes as a self-contained viewer (:mod:`viewer`).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from casi_proto.errors import INVALID_ARGUMENT, NetError
from casi_sim import INTENTION_NAMES, BatchSim, GameConfig, narrate
from casi_sim.narrate import Turn

from casi_orchestrator import sampling, wire
from casi_orchestrator.checkpoint import META, CheckpointError, find_checkpoint, read_checkpoint
from casi_orchestrator.config import (
    ConfigError,
    RunConfig,
    load_config,
    parse_learner_flags,
    validate_config,
)
from casi_orchestrator.exits import EXIT_ERROR, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.learners import LearnerPool, LearnerStartError
from casi_orchestrator.metrics import RETURN, WIN_RATE
from casi_orchestrator.resume import CHECKPOINT, ResumeError, new_state, read_state
from casi_orchestrator.rollout import act, allowed_rows, init_hidden, joint_action

CONFIG = "config.toml"


class PlayError(Exception):
    """Why ``casi play`` cannot go on; ``code`` is its exit status."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Source:
    """Where a trial's config and checkpoint are."""

    trial_dir: Path
    checkpoint: Path
    note: str = ""  # said before playing (which trial of several)


@dataclass
class Episode:
    """One episode played: its world at the start and every step in which someone acted."""

    index: int
    world: dict[str, list[Any]]  # values [C], direct and goal [na][C] of sim.state()
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Play:
    """What ``casi play`` played, with everything needed to tell it."""

    cfg: RunConfig
    game: GameConfig
    names: list[str]
    trial: int
    iteration: int
    how: str  # which episodes, and how the actions were chosen
    episodes: list[Episode]
    last_eval: dict[str, dict[str, float | None]]  # the checkpoint's last evaluation


def locate(path: Path) -> Source:
    """The trial of ``path``: a run, trial or checkpoint folder (PlayError, usage, if not)."""
    path = Path(path)
    if not path.exists():
        raise PlayError(f"{path}: no such run, trial or checkpoint folder", EXIT_USAGE)
    if (path / "manifest.json").exists() or path.name in (CHECKPOINT, CHECKPOINT + ".old"):
        return Source(path.parent, path)
    if (path / CONFIG).exists():
        return Source(path, path / CHECKPOINT)
    trials = sorted(path.glob("trial-*/" + CONFIG), key=lambda p: _trial_number(p.parent))
    if not trials:
        raise PlayError(
            f"{path}: not a run folder (no trial-*/{CONFIG}), trial folder (no {CONFIG}) or "
            "checkpoint folder (no manifest.json)",
            EXIT_USAGE,
        )
    trial_dir = trials[0].parent
    note = ""
    if len(trials) > 1:
        note = (
            f"{path} has {len(trials)} trials; playing {trial_dir.name} (name another trial "
            "folder to play it)"
        )
    return Source(trial_dir, trial_dir / CHECKPOINT, note)


def _trial_number(folder: Path) -> int:
    suffix = folder.name.removeprefix("trial-")
    return int(suffix) if suffix.isdigit() else 1 << 30


def load(source: Source, learner_flags: list[str]) -> RunConfig:
    """The trial's config, with ``--learner`` addresses (PlayError, usage, listing errors).

    Read from the trial's ``config.toml``, else from the checkpoint's own copy (``meta.config``,
    without ``[log]`` and ``[learners]``, which take their defaults)."""
    overrides, errors = parse_learner_flags(learner_flags)
    config = source.trial_dir / CONFIG
    cfg = None
    try:
        if config.is_file():
            cfg = load_config(config, overrides=overrides)
        else:
            cfg = validate_config(*_checkpoint_config(source), overrides)
    except ConfigError as exc:
        errors += exc.lines
    if errors or cfg is None:
        raise PlayError("\n".join([*errors, f"{len(errors)} error(s)"]), EXIT_USAGE)
    return cfg


def _checkpoint_config(source: Source) -> tuple[dict[str, Any], str]:
    """The config a checkpoint keeps in its meta, and where it is (for messages)."""
    if find_checkpoint(source.checkpoint) is None:
        raise PlayError(f"{source.checkpoint}: no {CONFIG} and no checkpoint here", EXIT_USAGE)
    _, meta = read_checkpoint(source.checkpoint)
    kept = meta.get("config")
    if not isinstance(kept, dict):
        raise PlayError(
            f"{source.checkpoint}: no {CONFIG} beside it in {source.trial_dir}, and the "
            f"checkpoint is older than the copy of the config it now keeps; put the trial's "
            f"{CONFIG} there",
            EXIT_USAGE,
        )
    return {**kept, "name": meta.get("experiment", "")}, f"{source.checkpoint / META}: config"


def play(
    source: Source,
    cfg: RunConfig,
    pool: LearnerPool,
    episodes: int,
    seed: int | None,
    sample: bool,
) -> Play:
    """Starts (or connects) the learners, loads the checkpoint into them, plays ``episodes``."""
    if find_checkpoint(source.checkpoint) is None:
        raise PlayError(
            f"{source.trial_dir}: no checkpoint yet ({source.checkpoint} is missing): the trial "
            "has not reached its first checkpoint.every iterations"
        )
    trial = _meta_trial(source)
    resumed = read_state(source.checkpoint, cfg, new_state(cfg, trial), trial)
    game = cfg.game()
    fleet = _loaded_fleet(source, cfg, pool, resumed.params, trial)
    try:
        sim = BatchSim(game, episodes, seed=sampling.derive_seed(cfg.seed, trial, sampling.WORLD))
        reset_seed, rng, how = _how(cfg, trial, episodes, seed, sample)
        heads = wire.head_sizes(game, cfg.algorithm.factored_main)
        played = play_episodes(fleet, sim, reset_seed, heads, cfg.algorithm, rng)
    finally:
        fleet.close()
    names = [spec.name for spec in cfg.agent_specs]
    last = resumed.state.final_eval or resumed.state.last_eval
    return Play(cfg, game, names, trial, resumed.state.iteration, how, played, last)


def _meta_trial(source: Source) -> int:
    """The trial number in the checkpoint's meta: the fresh state the checkpoint is read
    against is that trial's (its bonus has the trial's own seed). 0 if the meta cannot be
    read: read_state then says what is wrong with it."""
    found = find_checkpoint(source.checkpoint) or source.checkpoint
    try:
        description = json.loads((found / META).read_text())
        return int(description["meta"]["trial"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _loaded_fleet(
    source: Source, cfg: RunConfig, pool: LearnerPool, params: dict[str, Any], trial: int
) -> Fleet:
    """The learning agents' learners, Init-ed as in the trial and given the checkpoint."""
    game = cfg.game()

    def net_cfg(m: Member) -> Any:
        init_seed = sampling.derive_seed(cfg.seed, trial, sampling.NET_INIT, m.index)
        return wire.net_cfg(cfg.algorithm, game, init_seed)

    members = [
        Member(spec.name, slot, index, pool.open(spec.name, spec.address), params[spec.name])
        for index, (slot, spec) in enumerate(cfg.learning_agents)
    ]
    fleet = Fleet(pool, members, net_cfg, cfg.learners.remote_wait)
    try:
        fleet.each(lambda m: m.net.init(net_cfg(m)))
        fleet.each(lambda m: m.net.set_params(m.params))
    except NetError as exc:
        fleet.close()
        if exc.code != INVALID_ARGUMENT:
            raise
        raise PlayError(
            f"{source.checkpoint}: a learner refused the checkpoint's parameters: {exc.message}"
        ) from None
    return fleet


def _how(
    cfg: RunConfig, trial: int, episodes: int, seed: int | None, sample: bool
) -> tuple[int, np.random.Generator | None, str]:
    """The episodes' seed, the actions' random stream (None: greedy), and both in words.

    Without ``seed``: the evaluation's episodes, and its stream of sampled actions."""
    if seed is None:
        reset_seed = sampling.derive_seed(cfg.seed, trial, sampling.EVAL_SIM)
        how = f"the first {episodes} of trial {trial}'s evaluation episodes"
    else:
        reset_seed, how = seed, f"{episodes} episode(s) of seed {seed}"
    rng = None
    if sample:
        keys = (cfg.seed, trial, sampling.EVAL_ACTIONS) if seed is None else (seed,)
        rng = sampling.rng_for(*keys)
    how += ", actions sampled" if sample else ", greedy actions"
    if cfg.algorithm.mask_pointless:
        how += " among those not pointless (algorithm.mask_pointless)"
    return reset_seed, rng, how


def play_episodes(
    fleet: Fleet,
    sim: BatchSim,
    seed: int,
    head_sizes: list[int],
    alg: Any,
    rng: np.random.Generator | None,
) -> list[Episode]:
    """``sim.batch`` episodes from ``sim.reset(seed)``, acting as evaluation acts."""
    slots = [m.slot for m in fleet.members]
    obs = sim.reset(seed)
    state = sim.state()
    episodes = [
        Episode(b, {k: state[k][b].tolist() for k in ("values", "direct", "goal")})
        for b in range(sim.batch)
    ]
    init_hidden(fleet, alg.recurrent, sim.batch)
    for _ in range(sim.cfg.max_steps):
        allowed = allowed_rows(sim, slots) if alg.mask_pointless else None
        _, actions, _ = act(fleet, obs, head_sizes, rng, allowed)
        main, intentions = joint_action(slots, actions, sim.n_agents, head_sizes)
        obs, _, done, _, turns = narrate.step(sim, main, intentions)
        for episode, turn in zip(episodes, turns, strict=True):
            if any(turn.acting):
                episode.turns.append(turn)
        if done.all():
            break
    return episodes


# ---------------------------------------------------------------------------------------------
# Words


def episode_lines(p: Play, episode: Episode) -> list[str]:
    """One episode: its world, every step, how it ended."""
    state = {k: np.array([v]) for k, v in episode.world.items()}
    out = [f"episode {episode.index}", *narrate.world_lines(p.game, state, 0, p.names)]
    for turn in episode.turns:
        out.append(narrate.text(p.game, turn, p.names))
    out.append("end: " + "; ".join(ending(p, episode)))
    return out


def ending(p: Play, episode: Episode) -> list[str]:
    """How each agent did: won at which step or not, and its own return."""
    out = []
    for i, name in enumerate(p.names):
        ret = sum(t.own_reward[i] for t in episode.turns if t.acting[i])
        won = next((t.step for t in episode.turns if t.won[i]), None)
        how = f"won at step {won}" if won else "did not win"
        out.append(f"{name} {how} (return {ret:+g})")
    return out


@dataclass
class Counts:
    """Who asked whom, and how the questions were answered, over the episodes played."""

    asks: np.ndarray  # [na, na]: questions from i to j (the diagonal: to oneself)
    intentions: np.ndarray  # [na, N_INTENTIONS]: how i answered the questions it got
    wins: np.ndarray  # [na]
    returns: np.ndarray  # [na]: summed own returns


def counts(p: Play) -> Counts:
    na = p.game.n_agents
    c, m = p.game.attrs.count, p.game.attrs.values
    out = Counts(
        np.zeros((na, na), int), np.zeros((na, len(INTENTION_NAMES)), int), np.zeros(na, int),
        np.zeros(na),
    )  # fmt: skip
    for episode in p.episodes:
        for turn in episode.turns:
            for i in range(na):
                if not turn.acting[i]:
                    continue
                out.returns[i] += turn.own_reward[i]
                out.wins[i] += turn.won[i]
                if turn.main[i] > c * m:
                    out.asks[i, (turn.main[i] - 1 - c * m) // c] += 1
                asked = turn.questions[i]
                if asked is not None and turn.acting[asked[0]]:
                    out.intentions[asked[0], turn.intentions[asked[0]][i]] += 1
    return out


def summary_lines(p: Play) -> list[str]:
    """The who-asks-whom table, the answers by intention, wins and mean returns."""
    n = len(p.episodes)
    k = counts(p)
    width = max(6, *(len(x) for x in p.names)) + 2
    out = [f"who asks whom ({n} episode(s); a row's agent asks the column's)"]
    out.append(" " * width + "".join(x.rjust(width) for x in p.names))
    for i, name in enumerate(p.names):
        out.append(name.ljust(width) + "".join(str(v).rjust(width) for v in k.asks[i]))
    heads = [x.replace("_", " ") for x in INTENTION_NAMES]
    out.append("")
    out.append("answers by intention (the questions each agent was asked, by how it answered)")
    out.append(" " * width + "".join(h.rjust(len(h) + 2) for h in heads))
    for i, name in enumerate(p.names):
        row = "".join(str(v).rjust(len(h) + 2) for v, h in zip(k.intentions[i], heads, strict=True))
        out.append(name.ljust(width) + row)
    out.append("")
    for i, name in enumerate(p.names):
        out.append(f"{name}: won {k.wins[i]} of {n}, mean return {k.returns[i] / n:+.1f}")
    return out


def report_lines(p: Play, source: Source) -> list[str]:
    head = [
        f"{p.cfg.name} trial {p.trial}, checkpoint of iteration {p.iteration} "
        f"({source.checkpoint}): {p.how}",
    ]
    if p.last_eval:
        scores = [
            f"{name} win rate {m.get(WIN_RATE) or 0:.3g}, return {m.get(RETURN) or 0:+.1f}"
            for name, m in p.last_eval.items()
        ]
        head.append(f"its last evaluation ({p.cfg.eval.episodes} episodes): {'; '.join(scores)}")
    head.append("")
    body = []
    for episode in p.episodes:
        body += [*episode_lines(p, episode), ""]
    return head + body + summary_lines(p)


def as_data(p: Play) -> dict[str, Any]:
    """Everything the HTML viewer shows, as JSON-able data."""
    k = counts(p)
    return {
        "title": f"{p.cfg.name} trial {p.trial}, iteration {p.iteration}",
        "how": p.how,
        "names": p.names,
        "kinds": list(p.game.agents),
        "attrs": p.game.attrs.count,
        "values": p.game.attrs.values,
        "max_steps": p.game.max_steps,
        "intentions": list(INTENTION_NAMES),
        "asks": k.asks.tolist(),
        "answers": k.intentions.tolist(),
        "wins": k.wins.tolist(),
        "mean_returns": (k.returns / max(1, len(p.episodes))).tolist(),
        "episodes": [
            {
                "index": e.index,
                "world": e.world,
                "end": ending(p, e),
                "steps": [
                    {"lines": narrate.lines(p.game, t, p.names), **asdict(t)} for t in e.turns
                ],
            }
            for e in p.episodes
        ],
    }


# ---------------------------------------------------------------------------------------------
# The command


def play_command(
    path: Path,
    episodes: int = 1,
    seed: int | None = None,
    sample: bool = False,
    learner_flags: list[str] | None = None,
    html: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``casi play``; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr

    def fail(message: str, code: int) -> int:
        print(f"casi: {message}", file=err)
        return code

    if episodes < 1:
        return fail(f"--episodes must be >= 1, got {episodes}", EXIT_USAGE)
    if seed is not None and seed < 0:
        return fail(f"--seed must be >= 0, got {seed}", EXIT_USAGE)
    try:
        source = locate(path)
        cfg = load(source, learner_flags or [])
        if source.note:
            print(source.note, file=err)
        with tempfile.TemporaryDirectory(prefix="casi-play-") as logs:
            with LearnerPool(cfg.learners, Path(logs)) as pool:
                played = play(source, cfg, pool, episodes, seed, sample)
    except PlayError as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_SIGNAL_BASE + signal.SIGINT)
    except (ResumeError, CheckpointError, LearnerStartError, NetError) as exc:
        return fail(str(exc), EXIT_ERROR)
    print("\n".join(report_lines(played, source)), file=out)
    if html is not None:
        return _write_html(html, played, fail, out)
    return EXIT_OK


def _write_html(path: Path, played: Play, fail: Callable[[str, int], int], out: TextIO) -> int:
    from casi_orchestrator.viewer import write_viewer

    try:
        write_viewer(path, as_data(played))
    except OSError as exc:
        return fail(f"--html {path}: {exc.strerror or exc}", EXIT_ERROR)
    print(f"wrote {path}", file=out)
    return EXIT_OK
