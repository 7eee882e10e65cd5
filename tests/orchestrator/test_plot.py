import csv
import re
import struct

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.cli import main
from casi_orchestrator.exits import EXIT_USAGE
from casi_orchestrator.plot import (
    MetricError,
    build_figure,
    ewma,
    plot_runs,
    read_trial,
    run_curves,
    run_labels,
)

from .test_trainer import config, run_trial

AGENTS = ("a0", "a1")


def write_trial(run_dir, k, win_rates, agents=AGENTS, every=1):
    """iterations.csv with LOOP's columns; evaluation cells only every `every` iterations."""
    trial = run_dir / f"trial-{k}"
    trial.mkdir(parents=True)
    header = ["iteration", "agent_steps", "wall_time"]
    for a in agents:
        header += [f"{a}.return", f"{a}.win_rate", f"{a}.policy_loss", f"{a}.event"]
    with open(trial / "iterations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, rate in enumerate(win_rates):
            evaluated = i % every == 0
            row = [i, (i + 1) * 100, 0.5 * i]
            for j, _ in enumerate(agents):
                cell = "" if not evaluated else rate + j
                row += ["" if not evaluated else 10 * rate, cell, 0.1, ""]
            w.writerow(row)


def test_ewma_is_bias_corrected_by_hand():
    # m = 0.5 v + 0.5 m from m = 0, divided by 1 - 0.5 ** (t + 1)
    np.testing.assert_allclose(ewma([1.0, 0.0, 0.0, 4.0], 0.5), [1.0, 1 / 3, 1 / 7, 2.2])
    # (0.1 * 1 + 0.09 * 0.5) / 0.19: the weighted mean of the points so far
    np.testing.assert_allclose(ewma([0.5, 1.0], 0.1), [0.5, 1.45 / 1.9])
    np.testing.assert_allclose(ewma([3.0, 1.0], 1.0), [3.0, 1.0])
    np.testing.assert_allclose(ewma([2.0, 2.0, 2.0], 0.1), [2.0, 2.0, 2.0])
    assert ewma([], 0.3).shape == (0,)
    with pytest.raises(ValueError, match="alpha must be in"):
        ewma([1.0], 0.0)


def test_read_trial_skips_empty_cells(tmp_path):
    write_trial(tmp_path, 0, [0.1, 0.2, 0.3, 0.4, 0.5], every=2)
    series = read_trial(tmp_path / "trial-0" / "iterations.csv", "win_rate")
    assert sorted(series) == ["a0", "a1"]
    assert series["a0"].iteration.tolist() == [0, 2, 4]
    assert series["a0"].agent_steps.tolist() == [100, 300, 500]
    np.testing.assert_allclose(series["a1"].values, [1.1, 1.3, 1.5])


def test_run_curves_align_trials_of_different_lengths(tmp_path):
    write_trial(tmp_path, 0, [0.0, 1.0, 1.0])
    write_trial(tmp_path, 1, [1.0, 1.0])
    write_trial(tmp_path, 2, [0.5, 0.0, 0.0, 0.0])
    curves = run_curves(tmp_path, "win_rate", alpha=0.5)
    c = curves["a0"]
    # smoothed trials: [0, 2/3, 6/7], [1, 1], [1/2, 1/6, 1/14, 1/30]
    assert c.iteration.tolist() == [0, 1, 2, 3]
    assert c.trials.tolist() == [3, 3, 2, 1]
    np.testing.assert_allclose(c.x, [100, 200, 300, 400])
    np.testing.assert_allclose(c.mean, [0.5, 11 / 18, 13 / 28, 1 / 30])
    np.testing.assert_allclose(c.low, [0.0, 1 / 6, 1 / 14, 1 / 30])
    np.testing.assert_allclose(c.high, [1.0, 1.0, 6 / 7, 1 / 30])
    np.testing.assert_allclose(curves["a1"].mean, c.mean + 1)


def legend(ax):
    return [re.sub(r" \(last [^)]*\)$", "", t.get_text()) for t in ax.get_legend().get_texts()]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_runs_writes_one_png_with_a_labelled_line_per_run_and_agent(tmp_path):
    rng = np.random.default_rng(0)
    runs = [tmp_path / "exp2_honest", tmp_path / "exp1_random_init"]
    for run in runs:
        for k in range(3):
            write_trial(run, k, rng.random(20).round(3).tolist(), every=5)
    out = plot_runs(runs, tmp_path / "plots" / "curves.png", labels=["honest", "random"])
    assert out == tmp_path / "plots" / "curves.png"
    assert png_size(out) == (1200, 800)  # the four default panels
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]

    fig = build_figure(runs, labels=["honest", "random"])
    assert [ax.get_title() for ax in fig.axes] == [
        "win_rate", "return", "questions", "answers per episode by intention"
    ]  # fmt: skip
    assert legend(fig.axes[0]) == ["honest a0", "honest a1", "random a0", "random a1"]
    assert "min-max band over 3 trials" in fig.texts[0].get_text()
    fig = build_figure(runs, metric="return")
    assert tuple(fig.get_size_inches() * fig.dpi) == (800, 500)
    assert legend(fig.axes[0]) == [
        "exp2_honest a0",
        "exp2_honest a1",
        "exp1_random_init a0",
        "exp1_random_init a1",
    ]


def test_the_raw_evaluations_are_drawn_under_the_line_and_the_legend_gives_the_last(tmp_path):
    write_trial(tmp_path / "run", 0, [0.0, 0.0, 0.0, 0.5, 0.9, 0.75], agents=("a0",), every=2)
    ax = build_figure([tmp_path / "run"], metric="win_rate").axes[0]
    (points,) = ax.collections  # one trial: its points and no band
    np.testing.assert_allclose(points.get_offsets(), [[100, 0.0], [300, 0.0], [500, 0.9]])
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), ewma([0.0, 0.0, 0.9], 0.1))
    assert points.get_zorder() < line.get_zorder()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run a0 (last 0.9)"]
    assert "min-max" not in ax.get_title() and "bias-corrected" in ax.get_title()


def test_two_runs_of_one_experiment_get_labels_that_tell_them_apart(tmp_path):
    runs = [tmp_path / "a" / "runs" / "exp2", tmp_path / "b" / "runs" / "exp2"]
    for run in runs:
        write_trial(run, 0, [0.1, 0.2], agents=("a0",))
    assert run_labels(runs) == ["a/…/exp2", "b/…/exp2"]
    assert run_labels([runs[0], tmp_path / "c" / "exp1"]) == ["exp2", "exp1"]
    assert run_labels([runs[0], runs[0]]) == ["exp2 (1)", "exp2 (2)"]
    ax = build_figure(runs, metric="win_rate").axes[0]
    assert legend(ax) == ["a/…/exp2 a0", "b/…/exp2 a0"]


def test_constant_series_get_readable_axes(tmp_path):
    trial = tmp_path / "run" / "trial-0"
    trial.mkdir(parents=True)
    rows = ["iteration,agent_steps,a0.win_rate,a0.return,a0.questions,a0.answers_ignore"]
    rows += [f"{i},{100 * i},0.0,{-200.0 + (i % 2) * 1e-13!r},0.3,0.0" for i in range(1, 6)]
    (trial / "iterations.csv").write_text("\n".join(rows) + "\n")
    axes = build_figure([tmp_path / "run"]).axes
    np.testing.assert_allclose(axes[0].get_ylim(), (-0.03, 1.03))
    np.testing.assert_allclose(axes[1].get_ylim(), (-220.0, -180.0))
    np.testing.assert_allclose(axes[2].get_ylim(), (0.2, 0.4))
    np.testing.assert_allclose(axes[3].get_ylim(), (-0.1, 0.1))
    assert axes[1].yaxis.get_major_formatter().get_offset() == ""
    # the answers panel: a colour per intention, the ones with values drawn
    assert legend(axes[3])[:2] == ["ignore", "specific_lie"]


def test_a_metric_without_values_lists_those_that_have_some(tmp_path, capsys):
    with pytest.raises(ValueError, match="no trial-\\*/iterations.csv"):
        plot_runs([tmp_path], tmp_path / "x.png")
    write_trial(tmp_path / "run", 0, [0.1])
    message = (
        "no column ending in '.steps_to_win' .* metrics with values: policy_loss, return, win_rate$"
    )
    with pytest.raises(MetricError, match=message):
        plot_runs([tmp_path / "run"], tmp_path / "x.png", metric="steps_to_win")
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        plot_runs([tmp_path / "run"] * 2, tmp_path / "x.png", labels=["one"])
    assert main(["plot", str(tmp_path / "run"), "--metric", "win_rat"]) == EXIT_USAGE
    assert "metrics with values: policy_loss, return, win_rate" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "run"), "--metric", "list"]) == 0
    assert capsys.readouterr().out.split() == ["policy_loss", "return", "win_rate"]
    assert not (tmp_path / "run" / "curves.png").exists()


@pytest.mark.expensive
def test_a_real_run_is_plotted_from_its_files(tmp_path):
    cfg = config(tmp_path, algorithm={"iterations": 6})
    run_trial(cfg, tmp_path / "run", {"a0": ScriptedNet("honest")})
    rows = (tmp_path / "run" / "trial-0" / "iterations.csv").read_text().splitlines()
    evaluated = [r for r in rows[1:] if r.split(",")[3]]
    assert len(evaluated) == 3  # iterations 2, 4 and 6
    fig = build_figure([tmp_path / "run"])
    for ax in fig.axes[:3]:
        (points,) = ax.collections
        assert len(points.get_offsets()) == 3
    # the honest partner answers with the complete truth: five intentions, all drawn
    assert len(fig.axes[3].lines) == 5 and len(fig.axes[3].collections) == 5
    assert "min-max" not in fig.texts[0].get_text()
    assert main(["plot", str(tmp_path / "run")]) == 0
    assert png_size(tmp_path / "run" / "curves.png") == (1200, 800)
