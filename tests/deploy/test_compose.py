"""The compose files validate with Debian's docker-compose, and say what the README promises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def compose_config(
    tmp_path: Path, *files: str, token: str | None = "test-token"
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    if token is not None:
        env["CASI_TOKEN"] = token
    # An empty env file: a developer's own .env must not change what is tested.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    args = [str(COMPOSE), "--env-file", str(empty)]
    for name in files:
        args += ["-f", name]
    return subprocess.run(
        [*args, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.expensive  # runs docker-compose
def test_default_compose_is_valid_and_waits_for_healthy_learner(tmp_path):
    result = compose_config(tmp_path, "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "condition: service_healthy" in out
    assert "casi_proto.health" in out
    assert "./runs:/runs" in out or re.search(r"runs:/runs", out)
    assert "CASI_TOKEN: test-token" in out
    assert "driver: nvidia" not in out, "CPU-only hosts must not need a GPU reservation"


@pytest.mark.expensive  # runs docker-compose
def test_gpu_override_reserves_a_gpu_for_the_learner(tmp_path):
    result = compose_config(tmp_path, "docker-compose.yml", "docker-compose.gpu.yml")
    assert result.returncode == 0, result.stderr
    assert "driver: nvidia" in result.stdout
    assert "- gpu" in result.stdout


@pytest.mark.expensive  # runs docker-compose
def test_compose_refuses_to_run_without_a_token(tmp_path):
    result = compose_config(tmp_path, "docker-compose.yml", token=None)
    assert result.returncode != 0
    assert "CASI_TOKEN" in result.stdout + result.stderr


def test_learner_image_has_no_simulator_and_orchestrator_image_no_torch():
    text = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"FROM \S+ AS ([\w-]+)\n(.*?)(?=\nFROM |\Z)", text, re.S))
    assert "sim/" not in stages["learner-build"] and "torch" in stages["learner-build"]
    assert "torch" not in stages["orchestrator-build"] and "sim/" in stages["orchestrator-build"]
    for name in ("learner", "orchestrator"):
        assert "USER casi" in stages[name]
        # Only the installed venv reaches the final images, never the wheelhouse.
        assert "/wheels" not in stages[name] and "pip install" not in stages[name]
