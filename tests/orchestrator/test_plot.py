import csv
import struct

import numpy as np
import pytest
from casi_orchestrator.plot import build_figure, ewma, plot_runs, read_trial, run_curves

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


def test_ewma_by_hand():
    np.testing.assert_allclose(ewma([1.0, 0.0, 0.0, 4.0], 0.5), [1.0, 0.5, 0.25, 2.125])
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
    # smoothed trials: [0, .5, .75], [1, 1], [.5, .25, .125, .0625]
    assert c.iteration.tolist() == [0, 1, 2, 3]
    assert c.trials.tolist() == [3, 3, 2, 1]
    np.testing.assert_allclose(c.x, [100, 200, 300, 400])
    np.testing.assert_allclose(c.mean, [0.5, 1.75 / 3, 0.4375, 0.0625])
    np.testing.assert_allclose(c.low, [0.0, 0.25, 0.125, 0.0625])
    np.testing.assert_allclose(c.high, [1.0, 1.0, 0.75, 0.0625])
    np.testing.assert_allclose(curves["a1"].mean, c.mean + 1)


def test_plot_runs_writes_one_png_with_a_labelled_line_per_run_and_agent(tmp_path):
    rng = np.random.default_rng(0)
    runs = [tmp_path / "exp2_honest", tmp_path / "exp1_random_init"]
    for run in runs:
        for k in range(3):
            write_trial(run, k, rng.random(20).round(3).tolist(), every=5)
    out = plot_runs(runs, tmp_path / "plots" / "curves.png", labels=["honest", "random"])
    assert out == tmp_path / "plots" / "curves.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 500)
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]

    fig = build_figure(runs, labels=["honest", "random"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["honest a0", "honest a1", "random a0", "random a1"]
    fig = build_figure(runs, metric="return")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [
        "exp2_honest a0",
        "exp2_honest a1",
        "exp1_random_init a0",
        "exp1_random_init a1",
    ]


def test_nothing_to_plot_is_named(tmp_path):
    with pytest.raises(ValueError, match="no trial-\\*/iterations.csv"):
        plot_runs([tmp_path], tmp_path / "x.png")
    write_trial(tmp_path / "run", 0, [0.1])
    with pytest.raises(ValueError, match="no column ending in '.steps_to_win'"):
        plot_runs([tmp_path / "run"], tmp_path / "x.png", metric="steps_to_win")
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        plot_runs([tmp_path / "run"] * 2, tmp_path / "x.png", labels=["one"])
