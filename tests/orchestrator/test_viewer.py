"""The ``casi play --html`` page: self-contained, and drawn by its script in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from casi_orchestrator.config import load_config
from casi_orchestrator.play import Episode, Play, as_data, counts
from casi_orchestrator.viewer import render, write_viewer
from casi_sim import BatchSim, narrate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NAMES = ["alice", "bob", "carol"]

GAME = """\
agents = [{ name = "alice" }, { name = "bob" }, { name = "carol", kind = "honest" }]
max_steps = 8
attrs = { count = 4, direct = 2, goal = 1, values = 3 }
"""


def random_play(tmp_path: Path, episodes: int = 2) -> Play:
    """Two learners acting at random beside an honest agent: the simulator's own turns."""
    config = tmp_path / "viewed.toml"
    config.write_text(GAME)
    cfg = load_config(config)
    game = cfg.game()
    sim = BatchSim(game, batch=episodes, seed=1)
    sim.reset(3)
    state = sim.state()
    played = [
        Episode(b, {k: state[k][b].tolist() for k in ("values", "direct", "goal")})
        for b in range(episodes)
    ]
    rng = np.random.default_rng(0)
    for _ in range(game.max_steps):
        main = rng.integers(0, game.n_main_actions, (episodes, 3))
        intentions = rng.integers(0, 5, (episodes, 3, 3))
        *_, turns = narrate.step(sim, main, intentions)
        for episode, turn in zip(played, turns, strict=True):
            if any(turn.acting):
                episode.turns.append(turn)
    return Play(cfg, game, NAMES, 0, 5, "random actions", played, {})


def embedded(html: str) -> dict:
    return json.loads(html.split('id="casi-data">')[1].split("</script>")[0])


def test_the_page_holds_its_data_and_nothing_from_the_network(tmp_path: Path) -> None:
    data = as_data(random_play(tmp_path))
    data["title"] = "a </script><script>alert(1)</script> title"
    html = render(data)
    assert embedded(html) == data  # the JSON cannot end its script element early
    assert html.count("</script>") == 2
    assert not re.search(r"(src|href)=|@import|url\(", html)
    assert "https://" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", ""
    )


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.expensive
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it as root)",
)
def test_headless_chromium_draws_the_episode_and_the_graph(tmp_path: Path) -> None:
    from PIL import Image

    played = random_play(tmp_path)
    page = write_viewer(tmp_path / "page.html", as_data(played))
    url = f"file://{page}?step=2"
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = chromium(profile, "--dump-dom", url).stdout
    assert 'data-ready="1"' in dom, dom[-2000:]
    step = played.episodes[0].turns[1]
    lines = re.findall(r'<ol id="lines">(.*?)</ol>', dom, re.S)[0]
    words = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li[^>]*>.*?</li>", lines)]
    want = narrate.lines(played.game, step, NAMES)
    assert [w.replace("&quot;", '"').replace("&gt;", ">") for w in words] == want
    assert "step 2 (2 of 8)" in dom
    world = re.findall(r'<table class="world" id="world">(.*?)</table>', dom, re.S)[0]
    assert world.count("<tr>") == 2 + 3  # the header, the true values, one row per agent
    heard = {
        (q, t.questions[q][1])
        for t in played.episodes[0].turns[:2]
        for q, answer in enumerate(t.answers)
        if answer is not None
    }
    assert world.count("<small>") == len(heard)  # the cells that show an answer received
    graph = re.findall(r'<svg id="graph".*?</svg>', dom, re.S)[0]
    asks = counts(played).asks
    edges = int((asks > 0).sum() - (np.diag(asks) > 0).sum())
    c, m = played.game.attrs.count, played.game.attrs.values
    now = sum(
        1
        for i, a in enumerate(step.main)
        if step.acting[i] and a > c * m and (a - 1 - c * m) // c != i
    )
    assert graph.count('class="edge"') == edges > 0
    assert graph.count('class="now"') == now
    assert graph.count("<circle") == 3
    shot = tmp_path / "shot.png"
    proc = chromium(profile, f"--screenshot={shot}", "--window-size=1280,900", url)
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (900, 1280, 3)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
