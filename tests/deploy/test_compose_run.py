"""docker compose up, for real: the two images of scripts/build-images.sh on a Docker engine.

Run by ``make compose-test`` (which starts dockerd and builds the images); skipped unless
CASI_COMPOSE_TEST=1 and a Docker engine answers. Each test is its own compose project (the
repository's docker-compose.yml and an override: a short exp2_honest, a temporary folder bound
at /runs) on the project's internal network; projects are removed at the end.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import tomli_w

from ..conftest import RUN_WAIT, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
DOCKER = shutil.which("docker")
TOKEN = "compose-test-token"
ITERATIONS = 60
EARLY = 10  # rows of iterations.csv before a fault is made: the run is under way
UID = 10001  # the images' casi user


def _engine_answers() -> bool:
    if DOCKER is None or COMPOSE is None:
        return False
    info = subprocess.run([DOCKER, "info"], capture_output=True, timeout=30)
    return info.returncode == 0


pytestmark = [
    pytest.mark.compose,
    pytest.mark.expensive,
    pytest.mark.skipif(
        os.environ.get("CASI_COMPOSE_TEST") != "1" or not _engine_answers(),
        reason="make compose-test runs these (CASI_COMPOSE_TEST=1 and a Docker engine)",
    ),
]


def short_config(remote_wait: float) -> str:
    """exp2_honest with few iterations, frequent evaluations and checkpoints."""
    cfg = tomllib.loads((ROOT / "experiments" / "exp2_honest.toml").read_text())
    cfg["name"] = "compose"
    cfg["algorithm"]["iterations"] = ITERATIONS
    cfg["eval"] = {"every": 10, "episodes": 128}
    cfg["checkpoint"] = {"every": 10}
    # A learner cut off from the network drops the call in flight without a word: it fails at
    # its deadline (Train's is 600 s by default), then the learner is waited for.
    cfg["learners"] = {"remote_wait": remote_wait, "rpc_timeout": 20, "train_timeout": 30}
    return tomli_w.dumps(cfg)


class Project:
    """One compose project: the repository's compose file, an override and a runs folder."""

    def __init__(self, tmp: Path, name: str, remote_wait: float, token: str, numba: Path) -> None:
        self.name = f"casitest{name}{os.getpid()}"
        self.runs = tmp / "runs"
        self.runs.mkdir()
        os.chown(self.runs, UID, UID)
        (tmp / "compose.toml").write_text(short_config(remote_wait))
        (tmp / "override.yml").write_text(
            "services:\n"
            "  orchestrator:\n"
            "    command: [/config/compose.toml, --learner, a0=learner:50051, --out, /runs]\n"
            f"    environment: {{CASI_TOKEN: {token}}}\n"
            "    volumes:\n"
            f"      - {self.runs}:/runs\n"
            f"      - {tmp / 'compose.toml'}:/config/compose.toml:ro\n"
            f"      - {numba}:/opt/casi/numba-cache\n"  # compiled once for all the tests
        )
        (tmp / "empty.env").write_text("")  # a developer's .env must not change what is tested
        self.args = [str(COMPOSE), "-p", self.name, "--env-file", str(tmp / "empty.env")]
        self.args += ["-f", str(ROOT / "docker-compose.yml"), "-f", str(tmp / "override.yml")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CASI_", "COMPOSE_"))}
        self.env = {**env, "CASI_TOKEN": TOKEN, "CASI_USER": str(UID)}
        self.trial = self.runs / "compose" / "trial-0"

    def __call__(self, *args: str, timeout: float = RUN_WAIT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.args, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def up(self) -> subprocess.CompletedProcess[str]:
        """``up`` to the end: the orchestrator's exit status is the command's."""
        return self("up", "--no-build", "--exit-code-from", "orchestrator")

    def start(self) -> None:
        """``up -d``, then waits until the run has written EARLY iterations."""
        result = self("up", "--no-build", "-d")
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: self.rows() >= EARLY, RUN_WAIT), self.logs()

    def container(self, service: str) -> str:
        return self("ps", "-q", service, timeout=60).stdout.strip()

    def network(self) -> str:
        return f"{self.name}_casi"

    def inspect(self, service: str) -> dict:
        out = docker("inspect", self.container(service)).stdout
        return json.loads(out)[0]

    def wait_exit(self, service: str) -> int:
        """The exit status of the service's container, once it has ended."""
        return int(docker("wait", self.container(service), timeout=RUN_WAIT).stdout)

    def logs(self, service: str = "orchestrator") -> str:
        return self("logs", "--no-color", service, timeout=60).stdout

    def rows(self) -> int:
        return len(iterations(self.trial)) if (self.trial / "iterations.csv").exists() else 0

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "-t", "5", timeout=120)


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result


def iterations(trial: Path) -> list[dict[str, str]]:
    """iterations.csv without the wall_time column."""
    with (trial / "iterations.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


def events(trial: Path) -> list[str]:
    lines = (trial / "events.jsonl").read_text().splitlines()
    return [json.loads(line).get("event", "") for line in lines if line.strip()]


@pytest.fixture(scope="module")
def numba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numba's cache, shared by the projects of this module."""
    folder = tmp_path_factory.mktemp("numba-cache")
    os.chown(folder, UID, UID)
    return folder


@pytest.fixture
def project(tmp_path: Path, numba: Path) -> Iterator:
    made: list[Project] = []

    def make(name: str, remote_wait: float = 60, token: str = TOKEN) -> Project:
        (tmp_path / name).mkdir()
        made.append(Project(tmp_path / name, name, remote_wait, token, numba))
        return made[-1]

    yield make
    for p in made:
        p.down()


@pytest.fixture(scope="module")
def undisturbed(
    tmp_path_factory: pytest.TempPathFactory, numba: Path
) -> Iterator[tuple[Project, str, float]]:
    """Scenario 1, shared: ``up`` runs to the end; the others compare their numbers to its."""
    tmp = tmp_path_factory.mktemp("undisturbed")
    p = Project(tmp, "undisturbed", 60, TOKEN, numba)
    start = time.monotonic()
    result = p.up()
    took = time.monotonic() - start
    yield p, result.stdout + result.stderr + f"\nexit {result.returncode}", took
    p.down()


def test_up_runs_to_the_end_with_results_curves_and_checkpoint_in_runs(undisturbed):
    p, out, took = undisturbed
    assert out.endswith("exit 0"), out
    assert len(iterations(p.trial)) == ITERATIONS
    assert (p.trial / "checkpoint" / "manifest.json").exists()
    assert (p.runs / "compose" / "curves.png").stat().st_size > 0
    evaluations = [line for line in p.logs().splitlines() if "win" in line]
    assert len(evaluations) >= ITERATIONS // 10, p.logs()  # one progress line per evaluation
    print(f"undisturbed run: {took:.0f} s")


def test_containers_run_as_non_root_with_a_read_only_root_on_an_internal_network(undisturbed):
    p, _, _ = undisturbed
    for service in ("learner", "orchestrator"):
        info = p.inspect(service)
        assert info["Config"]["User"] not in ("", "0", "root"), service
        assert info["HostConfig"]["ReadonlyRootfs"] is True, service
        assert list(info["NetworkSettings"]["Networks"]) == [p.network()], service
    network = json.loads(docker("network", "inspect", p.network()).stdout)[0]
    assert network["Internal"] is True


def test_a_killed_learner_container_comes_back_and_the_numbers_do_not_change(undisturbed, project):
    p = project("fault")
    p.start()
    # The learner's process dies as in a crash or an out-of-memory kill. (`docker kill` would
    # not do: Docker counts it as a stop by hand, and restart policies then do not apply.)
    os.kill(p.inspect("learner")["State"]["Pid"], signal.SIGKILL)
    assert p.wait_exit("orchestrator") == 0, p.logs()
    assert "learner_reconnected" in events(p.trial)
    assert iterations(p.trial) == iterations(undisturbed[0].trial)
    assert p.inspect("learner")["RestartCount"] >= 1


def test_a_stopped_orchestrator_checkpoints_and_up_again_resumes_with_the_same_numbers(
    undisturbed, project
):
    p = project("fault")
    p.start()
    stop = p("stop")
    assert stop.returncode == 0, stop.stderr
    assert p.inspect("orchestrator")["State"]["ExitCode"] == 143, p.logs()
    assert (p.trial / "checkpoint" / "manifest.json").exists()
    assert 0 < p.rows() < ITERATIONS
    again = p.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "--resume" in p.logs()
    assert iterations(p.trial) == iterations(undisturbed[0].trial)


def test_a_learner_cut_off_within_remote_wait_the_run_goes_on(undisturbed, project):
    p = project("fault")
    p.start()
    learner = p.container("learner")
    docker("network", "disconnect", p.network(), learner)
    time.sleep(5)
    docker("network", "connect", "--alias", "learner", p.network(), learner)
    assert p.wait_exit("orchestrator") == 0, p.logs()
    assert iterations(p.trial) == iterations(undisturbed[0].trial)


def test_a_learner_cut_off_beyond_remote_wait_stops_the_run_with_a_checkpoint(project):
    p = project("fault", remote_wait=10)
    p.start()
    docker("network", "disconnect", p.network(), p.container("learner"))
    assert p.wait_exit("orchestrator") == 1, p.logs()
    logs = p.logs()
    assert "waited 10 s (learners.remote_wait)" in logs, logs
    assert "the run stopped; iteration" in logs and "--resume" in logs, logs
    assert (p.trial / "checkpoint" / "manifest.json").exists()


def test_a_wrong_token_fails_at_once_with_the_unauthenticated_sentence(project):
    p = project("fault", token="not-the-learners-token")
    result = p.up()
    assert result.returncode == 1, result.stdout + result.stderr
    logs = p.logs()
    assert "casi: UNAUTHENTICATED: agent a0 at learner:50051: Init:" in logs, logs
    assert "the bearer token does not match" in logs, logs
    state = p.inspect("orchestrator")["State"]
    ran = seconds(state["FinishedAt"]) - seconds(state["StartedAt"])
    assert ran < 30, f"the orchestrator ran {ran:.0f} s before failing"
    assert not (p.trial / "iterations.csv").exists()


def seconds(stamp: str) -> float:
    """Seconds since the epoch of Docker's ``2026-12-01T16:03:59.14592593Z``."""
    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    whole = datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    return whole + float(f"0.{fraction or 0}")
