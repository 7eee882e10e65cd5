"""``casi``: run experiments, plot them and tabulate their results.

    casi run CONFIG [--trials N] [--learner NAME=HOST:PORT ...] [--iterations N]
                    [--resume | --force] [--out DIR] [--seed S] [--target-win-rate R]
                    [--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--ray [auto|HOST:PORT]]
    casi plot RUN... [--ewma A] [--metric M | --metric list] [--out FILE]
    casi summary RUN... [--target R]
    casi sweep RUN... --key DOTTED.KEY [--last N] [--out FILE]
    casi tune CONFIG [--resume | --force] [--out DIR] [--iterations N] [--seed S]
              [--ray auto|HOST:PORT]
    casi play RUN_OR_CHECKPOINT [--episodes N] [--seed S] [--sample]
              [--learner NAME=HOST:PORT ...] [--html FILE]

Exit status: 0 done, 1 a learner or checkpoint problem, 2 a bad config or command line,
130 / 143 stopped by SIGINT / SIGTERM (after checkpointing the last completed iteration).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from casi_orchestrator.exits import EXIT_ERROR, EXIT_SIGNAL_BASE, EXIT_USAGE, exit_codes_text
from casi_orchestrator.metrics import BONUS, EVAL_METRICS, LOSS_METRICS
from casi_orchestrator.versions import VersionAction


class StopFlag:
    """Set by the first SIGINT/SIGTERM; a second one stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL_BASE + (self.signum or 0)


@contextmanager
def _signals(flag: StopFlag) -> Iterator[None]:
    old = {s: signal.signal(s, flag.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="casi", description="Run and plot CASI experiments.",
        epilog=exit_codes_text(), formatter_class=raw,
    )  # fmt: skip
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run an experiment from a TOML config",
        epilog=exit_codes_text(), formatter_class=raw,
    )  # fmt: skip
    run.add_argument("config", type=Path, help="experiment TOML file")
    run.add_argument("--trials", type=int, default=1, help="number of trials (seeds), default 1")
    run.add_argument(
        "--learner",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="use a running learner for agent NAME (repeatable; NAME=inprocess: in this process)",
    )
    run.add_argument("--iterations", type=int, help="override algorithm.iterations")
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue existing trials from their checkpoints (and start missing ones)",
    )
    again.add_argument(
        "--force", action="store_true", help="delete existing trial folders and start them anew"
    )
    run.add_argument("--out", type=Path, default=Path("runs"), help="runs root (default runs/)")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument(
        "--target-win-rate",
        type=float,
        metavar="R",
        help="end each trial at the first evaluation with win rate >= R (eval.target_win_rate)",
    )
    run.add_argument(
        "--tls-ca", metavar="PEM", help="TLS to the --learner learners: their CA (learners.tls_ca)"
    )
    run.add_argument("--tls-cert", metavar="PEM", help="client certificate, mutual TLS")
    run.add_argument("--tls-key", metavar="PEM", help="key of --tls-cert")
    run.add_argument(
        "--ray", nargs="?", const="auto", metavar="auto|HOST:PORT",
        help="run the trials at once on Ray: auto (a cluster this machine is in, else a local "
        "Ray on 127.0.0.1) or a cluster's address",
    )  # fmt: skip
    tune = sub.add_parser("tune", help="population-based training of a config's [tune] section")
    tune.add_argument("config", type=Path, help="experiment TOML file with a [tune] section")
    tune_again = tune.add_mutually_exclusive_group()
    tune_again.add_argument("--resume", action="store_true", help="continue the population")
    tune_again.add_argument("--force", action="store_true", help="delete it and start anew")
    tune.add_argument("--out", type=Path, default=Path("runs"), help="runs root (default runs/)")
    tune.add_argument("--iterations", type=int, help="override algorithm.iterations")
    tune.add_argument("--seed", type=int, help="override the config's seed")
    tune.add_argument(
        "--ray", default="auto", metavar="auto|HOST:PORT",
        help="the Ray to run the members on (default auto: a local Ray on 127.0.0.1)",
    )  # fmt: skip
    plot = sub.add_parser("plot", help="plot one or more runs into one PNG")
    plot.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<experiment>)")
    plot.add_argument("--ewma", type=float, default=0.1, help="EWMA smoothing factor (0, 1]")
    metrics = ", ".join((*EVAL_METRICS, *LOSS_METRICS, BONUS))
    plot.add_argument(
        "--metric",
        help="one column suffix (default: panels of win_rate, return, questions and answers by "
        f"intention); 'list' prints those with values in RUN...; one of {metrics}",
    )
    plot.add_argument("--out", type=Path, help="PNG file (default <run>/curves.png)")
    summary = sub.add_parser("summary", help="a Markdown table of the results of runs")
    summary.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<experiment>)")
    summary.add_argument("--target", type=float, default=0.9, help="win rate to reach (0.9)")
    sweep = sub.add_parser("sweep", help="the end of runs against one config value, as Markdown")
    sweep.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<experiment>)")
    sweep.add_argument("--key", required=True, help="dotted config key, e.g. incentives.prosocial")
    sweep.add_argument("--last", type=int, default=5, help="evaluations averaged at the end (5)")
    sweep.add_argument("--out", type=Path, help="also plot win, truthfulness and influence here")
    play = sub.add_parser("play", help="trained learners play episodes, told step by step")
    play.add_argument(
        "path", type=Path, metavar="RUN_OR_CHECKPOINT",
        help="runs/<exp> (its first trial), runs/<exp>/trial-<k>, or a trial's checkpoint/",
    )  # fmt: skip
    play.add_argument("--episodes", type=int, default=1, metavar="N", help="episodes (1)")
    play.add_argument("--seed", type=int, metavar="S", help="episode seed (default: evaluation's)")
    play.add_argument("--sample", action="store_true", help="sample actions (default: greedy)")
    play.add_argument(
        "--learner", action="append", default=[], metavar="NAME=HOST:PORT",
        help="use a running learner for agent NAME (repeatable; NAME=inprocess: in this process)",
    )  # fmt: skip
    play.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML viewer")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``casi`` command."""
    args = _parser().parse_args(argv)
    if args.command == "plot":
        return plot_command(args)
    if args.command == "summary":
        return summary_command(args)
    if args.command == "sweep":
        return sweep_command(args)
    if args.command == "tune":
        from casi_orchestrator.tune import tune_command

        return tune_command(args)
    if args.command == "play":
        from casi_orchestrator.play import play_command

        return play_command(
            args.path, args.episodes, args.seed, args.sample, args.learner, args.html
        )
    return run_command(args)


def _error(message: str) -> None:
    print(f"casi: {message}", file=sys.stderr)


def plot_command(args: argparse.Namespace) -> int:
    from casi_orchestrator.plot import MetricError, metrics_with_values, plot_runs

    missing = [str(r) for r in args.runs if not r.is_dir()]
    if missing:
        _error(f"no such run folder: {', '.join(missing)}")
        return EXIT_USAGE
    if not 0 < args.ewma <= 1:
        _error(f"--ewma must be in (0, 1], got {args.ewma}")
        return EXIT_USAGE
    out = args.out or (args.runs[0] / "curves.png" if len(args.runs) == 1 else Path("curves.png"))
    try:
        if args.metric == "list":
            print("\n".join(metrics_with_values(list(args.runs))))
            return 0
        path = plot_runs(list(args.runs), out, metric=args.metric, ewma=args.ewma)
    except MetricError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    print(f"wrote {path}")
    return 0


def summary_command(args: argparse.Namespace) -> int:
    from casi_orchestrator.summary import markdown_table

    try:
        print(markdown_table(list(args.runs), target=args.target))
    except (OSError, ValueError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    return 0


def _load(args: argparse.Namespace) -> Any:
    from casi_orchestrator.config import ConfigError, load_config, parse_learner_flags

    overrides, errors = parse_learner_flags(args.learner)
    if args.trials < 1:
        errors.append(f"--trials must be >= 1, got {args.trials}")
    if args.iterations is not None and args.iterations < 1:
        errors.append(f"--iterations must be >= 1, got {args.iterations}")
    tls = {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key}
    try:
        cfg = load_config(
            args.config,
            overrides=overrides,
            seed=args.seed,
            iterations=args.iterations,
            learners={k: v for k, v in tls.items() if v is not None},
            target_win_rate=args.target_win_rate,
        )
    except ConfigError as exc:
        errors += exc.lines
        cfg = None
    if errors:
        for line in errors:
            print(line, file=sys.stderr)
        print(f"casi: {len(errors)} error(s) in the configuration", file=sys.stderr)
        return None
    return cfg


def run_command(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return EXIT_USAGE
    from casi_orchestrator.runner import command_words, run_experiment

    flag = StopFlag()
    with _signals(flag):
        try:
            return run_experiment(
                cfg, args.out, args.trials, args.resume, flag,
                force=args.force, words=command_words(args), ray_address=args.ray,
            )  # fmt: skip
        except KeyboardInterrupt:
            again = shlex.join([*command_words(args), "--resume"])
            _error(f"stopped at once by a second signal, keeping the last checkpoint: {again}")
            return flag.exit_code if flag.signum else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def sweep_command(args: argparse.Namespace) -> int:
    from casi_orchestrator import sweep

    if args.last < 1:
        _error(f"--last must be >= 1, got {args.last}")
        return EXIT_USAGE
    try:
        points = sweep.sweep_points(list(args.runs), args.key, args.last)
        print(sweep.markdown(points, args.key))
        if args.out:
            print(f"wrote {sweep.plot(points, args.key, args.out)}")
    except (OSError, ValueError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    return 0
