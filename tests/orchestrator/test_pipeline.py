"""``[learners] pipeline``: a rollout in parts of the batch, the Predicts of one part in flight
while another is sampled and stepped, gives the rollout of the loop without parts, in-process
and over gRPC (the Act stream and unary Predict alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casi.v1.net_pb2 import NetCfg
from casi_learner.server import serving
from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.rollout import RolloutBuffer, collect, row_parts
from casi_orchestrator.wire import head_sizes
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_sim import BatchSim, GameConfig

from .test_trainer import config, run_trial

pytest.importorskip("torch")
from casi_learner.torch_net import TorchNet  # noqa: E402

GAME = GameConfig(
    agents=["learner", "learner", "random", "honest"],
    max_steps=6,
    attrs={"count": 4, "direct": 2, "goal": 1, "values": 3},
)
HEADS = head_sizes(GAME)


def torch_net(seed: int) -> TorchNet:
    net = TorchNet("cpu", threads=1)
    net.init(NetContract().make_cfg(obs_dim=GAME.obs_dim, head_sizes=HEADS, seed=seed))
    return net


def rollout(nets: list[Any], parts: int, mask: bool = False, batch: int = 96) -> RolloutBuffer:
    pool = LearnerPool(LearnersCfg(), Path("/nonexistent"))
    members = [
        Member(f"a{k}", k, k, pool.add(f"a{k}", net))  # type: ignore[arg-type]
        for k, net in enumerate(nets)
    ]
    fleet = Fleet(pool, members, lambda m: NetCfg(), remote_wait=0.0)
    try:
        sim = BatchSim(GAME, batch=batch, seed=1)
        rng = np.random.default_rng(3)
        return collect(fleet, sim, 2, rng, HEADS, False, None, mask, parts=parts)
    finally:
        fleet.close()


def assert_same(a: RolloutBuffer, b: RolloutBuffer) -> None:
    for name, x, y in zip(a._fields, a, b, strict=True):
        if x is None:
            assert y is None, name
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), f"{name} differs"


def test_row_parts() -> None:
    assert row_parts(256, 2) == [slice(0, 128), slice(128, 256)]
    assert row_parts(256, 3) == [slice(0, 96), slice(96, 192), slice(192, 256)]
    assert row_parts(100, 2) == [slice(0, 64), slice(64, 100)]
    assert row_parts(20, 2) == [slice(0, 20)]  # too few rows: not pipelined
    assert row_parts(256, 1) == [slice(0, 256)]


def test_step_rows_gives_the_whole_batch_step_row_for_row() -> None:
    whole, parts = BatchSim(GAME, 48, 5), BatchSim(GAME, 48, 5)
    np.testing.assert_array_equal(whole.reset(7), parts.reset(7))
    rng = np.random.default_rng(0)
    for _ in range(GAME.max_steps):
        main = rng.integers(0, GAME.n_main_actions, (48, GAME.n_agents))
        intentions = rng.integers(0, 5, (48, GAME.n_agents, GAME.n_agents))
        expected = whole.step(main, intentions)
        got = [
            parts.step_rows(slice(a, b), main[a:b], intentions[a:b]) for a, b in ((0, 16), (16, 48))
        ]
        for k in range(3):
            np.testing.assert_array_equal(expected[k], np.concatenate([g[k] for g in got]))
        for key, value in expected[3].items():
            np.testing.assert_array_equal(value, np.concatenate([g[3][key] for g in got]))
    with pytest.raises(RuntimeError, match="call reset"):
        parts.step_rows(slice(0, 16), main[:16], intentions[:16])


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("parts", [2, 3])
def test_a_pipelined_in_process_rollout_is_the_unpipelined_one(parts: int, mask: bool) -> None:
    plain = rollout([torch_net(1), torch_net(2)], 1, mask)
    piped = rollout([torch_net(1), torch_net(2)], parts, mask)
    assert_same(plain, piped)


@pytest.mark.parametrize("stream", [True, False])
def test_a_pipelined_grpc_rollout_is_the_unpipelined_one(stream: bool) -> None:
    with serving(TorchNet("cpu", threads=1)) as one, serving(TorchNet("cpu", threads=1)) as two:
        clients = [NetClient(one), NetClient(two)]
        try:
            for seed, client in enumerate(clients, 1):
                client.init(
                    NetContract().make_cfg(obs_dim=GAME.obs_dim, head_sizes=HEADS, seed=seed)
                )
                client.use_stream = stream
                assert client.streaming == stream
            piped = rollout(clients, 2)
        finally:
            for client in clients:
                client.close()
    assert_same(rollout([torch_net(1), torch_net(2)], 1), piped)


def test_a_pipelined_run_has_the_numbers_of_an_unpipelined_one(tmp_path: Path) -> None:
    rows = {}
    for parts in (1, 2):
        cfg = config(
            tmp_path, algorithm={"batch": 64, "iterations": 4, "hidden_sizes": [16]},
            learners={"pipeline": parts},
        )  # fmt: skip
        folder = tmp_path / f"p{parts}"
        _, rows[parts] = run_trial(cfg, folder, {"a0": TorchNet("cpu", threads=1)})
    for a, b in zip(rows[1], rows[2], strict=True):
        a.pop("wall_time"), b.pop("wall_time")
        assert a == b


@pytest.mark.expensive
def test_a_learner_killed_in_a_pipelined_rollout_is_restarted_and_the_run_is_unchanged(
    tmp_path: Path,
) -> None:
    import signal

    from casi_orchestrator.config import load_config

    from ..faults.conftest import without_wall_time
    from ..faults.test_learner_death import SMOKE, events, kill_inside
    from ..faults.test_learner_death import run_trial as run_smoke

    plain = without_wall_time(run_smoke(load_config(SMOKE), tmp_path / "plain"))
    cfg = load_config(SMOKE)
    cfg = cfg.model_copy(update={"learners": cfg.learners.model_copy(update={"pipeline": 2})})

    def prepare(trainer: Any, pool: LearnerPool) -> None:
        learner = pool.learners["a0"]
        proc = learner.process
        assert proc is not None

        def kill() -> None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

        kill_inside(trainer, learner.net, "predict_async", kill, call=5, at=3)

    rows = run_smoke(cfg, tmp_path / "piped", prepare=prepare)
    assert without_wall_time(rows) == plain
    restarts = [e for e in events(tmp_path / "piped") if e.get("event") == "learner_restarted"]
    assert [(e["iteration"], e["agent"]) for e in restarts] == [(3, "a0")]
