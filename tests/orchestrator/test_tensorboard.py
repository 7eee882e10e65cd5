"""TensorBoard event files, read back with TensorBoard's own reader, and the plain progress
lines of a ``casi run`` whose stderr is not a terminal."""

from __future__ import annotations

import csv
import math
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from casi_learner.scripted import ScriptedNet
from casi_proto.api import LOSS_FIELDS
from casi_proto.names import INTENTION_NAMES

from ..conftest import RUN_WAIT, wait_until
from .test_trainer import config, run_trial, without_wall_time

EventAccumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator"
).EventAccumulator

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ["learner", "random", "learner"]  # a0 and a2 learn; a1, random, asks a0 questions


def nets() -> dict[str, Any]:
    # a0 lies to whoever asks; a2 samples uniformly (greedy, it does nothing)
    return {"a0": ScriptedNet("liar"), "a2": ScriptedNet("random")}


def scalars(trial: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event of a trial, by tag, in file order: nothing purged or merged."""
    acc = EventAccumulator(
        str(trial / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=False
    )
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def expected_tags(agent: str) -> dict[str, str]:
    """iterations.csv column -> tag, written out as the README documents them."""
    tags = {
        f"{agent}.return": f"charts/{agent}/episodic_return",
        f"{agent}.win_rate": f"charts/{agent}/win_rate",
        f"{agent}.steps_to_win": f"charts/{agent}/steps_to_win",
        f"{agent}.influence": f"charts/{agent}/influence",
        f"{agent}.bonus": f"charts/{agent}/bonus",
        f"{agent}.questions": f"comm/{agent}/questions",
    }
    tags |= {f"{agent}.{loss}": f"losses/{agent}/{loss}" for loss in LOSS_FIELDS}
    tags |= {f"{agent}.answers_{n}": f"comm/{agent}/answers/{n}" for n in INTENTION_NAMES}
    return tags


def from_csv(rows: list[dict[str, str]], agents: list[str]) -> dict[str, list[tuple[int, float]]]:
    """The scalars iterations.csv says the event files hold (all but comm/*/asked/*)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        step = int(row["agent_steps"])
        out.setdefault("charts/SPS", []).append((step, step / float(row["wall_time"])))
        out.setdefault("charts/iteration", []).append((step, float(row["iteration"])))
        for agent in agents:
            for col, tag in expected_tags(agent).items():
                if row[col] != "":
                    out.setdefault(tag, []).append((step, float(row[col])))
            if row[f"{agent}.answers_specific_lie"] != "":
                lies = float(row[f"{agent}.answers_specific_lie"])
                lies += float(row[f"{agent}.answers_general_lie"])
                out.setdefault(f"comm/{agent}/lies", []).append((step, lies))
    return out


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Equal steps, and values equal as float32 (NaN equal to NaN)."""
    return [s for s, _ in a] == [s for s, _ in b] and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-6, abs=1e-30)
        for (_, x), (_, y) in zip(a, b, strict=True)
    )


def test_event_files_hold_the_csv_under_cleanrl_tags(tmp_path: Path) -> None:
    cfg = config(tmp_path, agents=AGENTS, algorithm={"iterations": 5}, eval={"sample": True})
    _, rows = run_trial(cfg, tmp_path, nets())
    got = scalars(tmp_path / "trial-0")
    want = from_csv(rows, ["a0", "a2"])
    asked = {t: got.pop(t) for t in list(got) if "/asked/" in t}
    assert sorted(got) == sorted(want)
    for tag in want:
        assert same(got[tag], want[tag]), tag
    # the evaluations at 2, 4 and (the last) 5, on the agent-steps axis
    eval_steps = [int(r["agent_steps"]) for r in rows if r["a0.win_rate"] != ""]
    assert [s for s, _ in got["charts/a0/win_rate"]] == eval_steps and len(eval_steps) == 3
    assert got["comm/a0/lies"][0][1] > 0  # the liar's lies are counted
    # questions by addressee: a2 asks a0 and a1; they add up to its questions per episode
    assert sorted(asked) == [f"comm/{a}/asked/{b}" for a, b in
                             (("a0", "a1"), ("a0", "a2"), ("a2", "a0"), ("a2", "a1"))]  # fmt: skip
    to_a0, to_a1 = asked["comm/a2/asked/a0"], asked["comm/a2/asked/a1"]
    total = [a + b for (_, a), (_, b) in zip(to_a0, to_a1, strict=True)]
    assert total == pytest.approx([v for _, v in got["comm/a2/questions"]], rel=1e-5)
    assert min(total) > 0


def test_tensorboard_changes_no_other_output(tmp_path: Path) -> None:
    on = config(tmp_path, agents=AGENTS, log={"interactions": True})
    off = config(tmp_path, agents=AGENTS, log={"interactions": True, "tensorboard": False})
    _, rows_on = run_trial(on, tmp_path / "on", nets())
    _, rows_off = run_trial(off, tmp_path / "off", nets())
    assert without_wall_time(rows_on) == without_wall_time(rows_off)
    events = [(tmp_path / f / "trial-0" / "events.jsonl").read_bytes() for f in ("on", "off")]
    assert events[0] == events[1]
    assert list((tmp_path / "on" / "trial-0" / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "off" / "trial-0" / "tb").exists()


def test_a_fresh_start_removes_old_event_files(tmp_path: Path) -> None:
    cfg = config(tmp_path, agents=AGENTS)
    run_trial(cfg, tmp_path, nets())
    _, rows = run_trial(config(tmp_path, agents=AGENTS, seed=4), tmp_path, nets())
    got = scalars(tmp_path / "trial-0")
    assert got["charts/iteration"] == [(int(r["agent_steps"]), float(r["iteration"])) for r in rows]


def without_sps(tags: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    return {t: v for t, v in tags.items() if t != "charts/SPS"}


def test_a_resume_after_a_kill_writes_every_step_once(tmp_path: Path) -> None:
    # killed after iteration 6 when the last checkpoint was at 2: the event files are ahead
    cfg = config(tmp_path, agents=AGENTS, algorithm={"iterations": 6})
    run_trial(cfg, tmp_path / "straight", nets())
    run_trial(cfg, tmp_path / "b", nets(), stop_at=2)
    shutil.copytree(tmp_path / "b", tmp_path / "killed")
    run_trial(cfg, tmp_path / "b", nets(), resume=True)
    shutil.rmtree(tmp_path / "killed" / "trial-0" / "tb")
    shutil.copytree(tmp_path / "b" / "trial-0" / "tb", tmp_path / "killed" / "trial-0" / "tb")
    _, rows = run_trial(cfg, tmp_path / "killed", nets(), resume=True)
    straight = scalars(tmp_path / "straight" / "trial-0")
    got = scalars(tmp_path / "killed" / "trial-0")
    assert without_sps(got) == without_sps(straight)
    assert [s for s, _ in got["charts/SPS"]] == [int(r["agent_steps"]) for r in rows]


def test_an_extended_trial_drops_the_old_last_evaluation(tmp_path: Path) -> None:
    # 3 iterations evaluate at 2 and 3 (the last); extended to 4, the evaluation at 3 is gone
    run_trial(config(tmp_path, agents=AGENTS), tmp_path / "straight", nets())
    short = config(tmp_path, agents=AGENTS, algorithm={"iterations": 3})
    run_trial(short, tmp_path / "b", nets())
    assert len(scalars(tmp_path / "b" / "trial-0")["charts/a0/win_rate"]) == 2
    run_trial(config(tmp_path, agents=AGENTS), tmp_path / "b", nets(), resume=True)
    got, straight = scalars(tmp_path / "b" / "trial-0"), scalars(tmp_path / "straight" / "trial-0")
    assert without_sps(got) == without_sps(straight)
    assert len(got["charts/a0/win_rate"]) == 2


TINY = """\
seed = 1
agents = ["learner", "random"]
max_steps = 10
init = "fixed"
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 16
iterations = 5
hidden_sizes = [16]
[eval]
every = 2
episodes = 16
"""

# casi run in a fresh interpreter, then the modules it loaded
RUN_AND_LIST_MODULES = (
    "import sys\n"
    "from casi_orchestrator.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorboardX'}))\n"
    "sys.exit(code)\n"
)
LINE = re.compile(
    r"^tiny trial 0: iteration=(\d+)/5 agent_steps=(\d+) a0\.win_rate=(\S+) a0\.return=(\S+) "
    r"a0\.questions=(\S+) elapsed=\d+:\d\d:\d\d$"
)


def casi_run(tmp_path: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY + extra)
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, "run", str(cfg), "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip


@pytest.mark.expensive
def test_casi_run_logs_each_evaluation_and_writes_tensorboard_without_torch(
    tmp_path: Path,
) -> None:
    proc = casi_run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['tensorboardX']"  # and no torch
    trial = tmp_path / "tiny" / "trial-0"
    with open(trial / "iterations.csv") as f:
        rows = {r["iteration"]: r for r in csv.DictReader(f)}
    lines = [m.groups() for m in map(LINE.match, proc.stderr.splitlines()) if m]
    assert [it for it, *_ in lines] == ["2", "4", "5"], proc.stderr[-3000:]
    for it, steps, win, ret, questions in lines:
        row = rows[it]
        assert steps == row["agent_steps"]
        assert float(win) == pytest.approx(float(row["a0.win_rate"]), rel=5e-3)
        assert float(ret) == pytest.approx(float(row["a0.return"]), rel=5e-3, abs=1e-9)
        assert float(questions) == pytest.approx(float(row["a0.questions"]), rel=5e-3, abs=1e-9)
    assert "tiny trial 0 ━" not in proc.stderr  # and no progress bar
    assert f"watch them with: tensorboard --logdir {tmp_path / 'tiny'}" in proc.stderr
    got = scalars(trial)
    assert [s for s, _ in got["charts/a0/win_rate"]] == [int(rows[k]["agent_steps"]) for k in "245"]


@pytest.mark.expensive
def test_casi_run_with_tensorboard_off_writes_none_and_loads_no_tensorboardx(
    tmp_path: Path,
) -> None:
    proc = casi_run(tmp_path, "[log]\ntensorboard = false\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    trial = tmp_path / "tiny" / "trial-0"
    assert (trial / "iterations.csv").exists() and not (trial / "tb").exists()
    assert "tensorboard --logdir" not in proc.stderr


@pytest.mark.expensive
def test_an_interrupted_run_flushes_its_events_and_its_resume_goes_on(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace("iterations = 5", "iterations = 100000"))
    run = [sys.executable, "-m", "casi_orchestrator", "run", str(cfg), "--out", str(tmp_path)]
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trial = tmp_path / "tiny" / "trial-0"

    def rows() -> list[dict[str, str]]:
        with open(trial / "iterations.csv") as f:
            return list(csv.DictReader(f))

    assert wait_until(
        lambda: (trial / "iterations.csv").exists() and len(rows()) > 3, RUN_WAIT, proc
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=RUN_WAIT)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    steps = [int(r["agent_steps"]) for r in rows()]
    assert [s for s, _ in scalars(trial)["charts/iteration"]] == steps
    more = ["--resume", "--iterations", str(len(steps) + 2)]
    resumed = subprocess.run([*run, *more], cwd=ROOT, capture_output=True, timeout=RUN_WAIT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = [int(r["agent_steps"]) for r in rows()]
    assert [s for s, _ in scalars(trial)["charts/iteration"]] == steps
