"""TLS, mutual TLS and the token between ``casi run`` and a real ``casi-learner`` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import RUN_WAIT, LearnerProcess, make_test_ca

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]
SMOKE = (ROOT / "experiments" / "smoke.toml").read_text()
TOKEN = "s3cret-test-token"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def learner(
    certs: Path, request: pytest.FixtureRequest, learners: Callable[..., LearnerProcess]
) -> LearnerProcess:
    """A casi-learner with TLS and a token; ``mutual`` adds --tls-client-ca."""
    policy, mutual = request.param
    args = ["--policy", policy, "--token", TOKEN]
    args += ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")]
    if mutual:
        args += ["--tls-client-ca", str(certs / "ca.pem")]
    return learners(*args)


def casi(tmp_path: Path, extra_cfg: str, *args: str, env: dict[str, str] | None = None) -> str:
    cfg = tmp_path / "tls.toml"
    cfg.write_text(SMOKE + extra_cfg)
    base = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    proc = subprocess.run(
        [*CASI, "run", str(cfg), "--iterations", "2", "--out", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT, env={**base, **(env or {})},
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    return f"{proc.returncode}\n{proc.stderr}"


def rows(tmp_path: Path) -> list[str]:
    return (tmp_path / "tls" / "trial-0" / "iterations.csv").read_text().splitlines()


@pytest.mark.expensive
@pytest.mark.parametrize("learner", [("torch", True)], indirect=True)
def test_mutual_tls_and_token_from_the_command_line(
    tmp_path: Path, certs: Path, learner: LearnerProcess
) -> None:
    out = casi(
        tmp_path, "", "--learner", f"a0={learner.address}", "--tls-ca", str(certs / "ca.pem"),
        "--tls-cert", str(certs / "client.pem"), "--tls-key", str(certs / "client.key"),
        env={"CASI_TOKEN": TOKEN},
    )  # fmt: skip
    assert out.startswith("0\n"), out[-2000:]
    assert len(rows(tmp_path)) == 3  # header + 2 trained iterations


@pytest.mark.expensive
@pytest.mark.parametrize("learner", [("honest", False)], indirect=True)
def test_tls_and_token_from_config_keys(
    tmp_path: Path, certs: Path, learner: LearnerProcess
) -> None:
    keys = f'\n[learners]\ntls_ca = "{certs / "ca.pem"}"\ntoken_env = "MY_TOKEN"\n'
    out = casi(tmp_path, keys, "--learner", f"a0={learner.address}", env={"MY_TOKEN": TOKEN})
    assert out.startswith("0\n"), out[-2000:]
    resolved = (tmp_path / "tls" / "trial-0" / "config.toml").read_text()
    assert "tls_ca" in resolved and TOKEN not in resolved  # the token never reaches a file


@pytest.mark.expensive
@pytest.mark.parametrize("learner", [("honest", True)], indirect=True)
def test_what_a_secured_learner_refuses(
    tmp_path: Path, certs: Path, learner: LearnerProcess
) -> None:
    at = f"a0={learner.address}"
    wait = "\n[learners]\nstart_timeout = 2\n"
    ca = ("--tls-ca", str(certs / "ca.pem"))
    client = ("--tls-cert", str(certs / "client.pem"), "--tls-key", str(certs / "client.key"))
    token = {"CASI_TOKEN": TOKEN}
    t0 = time.monotonic()
    plaintext = casi(tmp_path, wait, "--learner", at, env=token)
    no_client_cert = casi(tmp_path, wait, "--learner", at, *ca, env=token)
    assert time.monotonic() - t0 < 30  # two bounded waits of 2 s, not gRPC's own backoff
    for out in (plaintext, no_client_cert):
        assert out.startswith("1\n"), out[-2000:]
        assert f"learner of agent 'a0' at {learner.address} is not reachable after 2 s" in out
    wrong = casi(tmp_path, wait, "--learner", at, *ca, *client, env={"CASI_TOKEN": "guess"})
    assert wrong.startswith("1\n"), wrong[-2000:]
    assert f"agent a0 at {learner.address}: Init:" in wrong
    assert "does not match the token" in wrong
    missing = casi(tmp_path, wait, "--learner", at, *ca, *client)
    assert missing.startswith("1\n") and "this learner requires a token" in missing


@pytest.mark.expensive
def test_tls_keys_are_checked_when_the_config_is_loaded(tmp_path: Path, certs: Path) -> None:
    keys = '\n[learners]\ntls_ca = "nowhere/ca.pem"\ntoken_env = "no such"\n'
    out = casi(tmp_path, keys)
    assert out.startswith("2\n"), out
    assert "learners.tls_ca: no such file 'nowhere/ca.pem'" in out
    assert "learners.token_env: String should match pattern" in out
    half = casi(
        tmp_path, "", "--tls-ca", str(certs / "ca.pem"), "--tls-cert", str(certs / "ca.pem")
    )
    assert half.startswith("2\n") and "learners: tls_cert and tls_key go together" in half
    no_ca = casi(tmp_path, '\n[learners]\ntls_server_name = "gpu1"\n')
    assert no_ca.startswith("2\n") and "need tls_ca" in no_ca
    unset = casi(tmp_path, '\n[learners]\ntoken_env = "CASI_TEST_UNSET_TOKEN"\n')
    assert unset.startswith("1\n")
    assert "learners.token_env = 'CASI_TEST_UNSET_TOKEN', but that environment variable" in unset


def test_tls_server_name_replaces_the_host_checked_against_the_certificate(certs: Path) -> None:
    from casi_learner.scripted import ScriptedNet
    from casi_learner.server import serving
    from casi_proto.client import NetClient
    from casi_proto.errors import NetError

    pem = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
    with serving(ScriptedNet("honest"), **pem) as address:  # a certificate for localhost
        ca = certs / "ca.pem"
        with NetClient(address, root_cert=ca, server_name="localhost") as client:
            client.wait_ready(60)
        with NetClient(address, name="a0", root_cert=ca, server_name="gpu1.lab") as client:
            with pytest.raises(NetError, match=f"agent a0 at {address}: not reachable"):
                client.wait_ready(1)
