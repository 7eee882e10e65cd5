"""TorchNet through the numpy-level Net contract: validation, training, state, a bandit."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from casi.v1 import net_pb2
from casi_learner.device import resolve_device
from casi_learner.losses import ppo_loss
from casi_learner.model import ActorCritic, joint_log_prob
from casi_learner.torch_net import TorchNet, optimizer_slots
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import NetError

HEADS = [3, 5, 5]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # small models run fastest on one thread, and the test machine is shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_cfg(**kw: object) -> net_pb2.NetCfg:
    optim = kw.pop("optim", net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=1e-2, eps=1e-5))
    cfg = net_pb2.NetCfg(
        protocol_version=PROTOCOL_VERSION,
        obs_dim=4,
        head_sizes=HEADS,
        hidden_sizes=[16, 16],
        seed=7,
        loss=net_pb2.LOSS_PPO,
        optim=optim,
        clip=0.2,
        value_coef=0.5,
        entropy_coef=0.01,
        epochs=2,
        minibatches=2,
        max_grad_norm=0.5,
    )
    for key, value in kw.items():
        if isinstance(value, list):
            getattr(cfg, key)[:] = value
            if not value:
                cfg.ClearField(key)
        else:
            setattr(cfg, key, value)
    return cfg


def make_net(**kw: object) -> TorchNet:
    net = TorchNet()
    net.init(make_cfg(**kw))
    return net


def toy_batch(b: int = 6, t: int = 3, obs_dim: int = 4, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    f = np.float32
    mask = np.ones((b, t), f)
    mask[0, -1] = 0.0  # one padded step
    actions = np.stack([rng.integers(0, h, (b, t)) for h in HEADS], axis=-1).astype(np.int64)
    return Sequences(
        obs=rng.normal(size=(b, t, obs_dim)).astype(f),
        actions=actions,
        logp_old=np.full((b, t), -math.log(3 * 5 * 5), f),
        values_old=np.zeros((b, t), f),
        advantages=rng.normal(size=(b, t)).astype(f),
        returns=rng.normal(size=(b, t)).astype(f),
        mask=mask,
    )


def snapshot(net: TorchNet) -> Params:
    return net.get_params()


def assert_same_params(a: Params, b: Params) -> None:
    assert a.version == b.version
    for part in ("tensors", "optimizer"):
        x, y = getattr(a, part), getattr(b, part)
        assert sorted(x) == sorted(y), part
        for key in x:
            assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
            assert np.array_equal(x[key], y[key]), key


def expect_error(code: str, fn: Callable[[], object], *fragments: str) -> NetError:
    with pytest.raises(NetError) as info:
        fn()
    assert info.value.code == code, info.value
    for fragment in fragments:
        assert fragment in info.value.message, (fragment, info.value.message)
    return info.value


# -- device and construction ---------------------------------------------------------------------


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_threads_setting() -> None:
    before = torch.get_num_threads()
    try:
        TorchNet(threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads"):
        TorchNet(threads=0)


def test_threads_apply_in_every_calling_thread_and_init_is_the_same_there() -> None:
    # a gRPC server calls in from its worker threads; MKL's thread count is per thread
    import threading

    net = TorchNet(threads=1)
    cfg = make_cfg(obs_dim=114, head_sizes=[25, 5, 5], hidden_sizes=[128, 128])  # exp2_honest
    net.init(cfg)
    here = snapshot(net)
    seen: list[Params] = []
    worker = threading.Thread(target=lambda: (net.init(cfg), seen.append(snapshot(net))))
    worker.start()
    worker.join()
    assert_same_params(here, seen[0])


# -- Init ----------------------------------------------------------------------------------------


def test_init_reply() -> None:
    net = TorchNet()
    reply = net.init(make_cfg(obs_dim=3, hidden_sizes=[4], head_sizes=[2, 5]))
    assert reply.protocol_version == PROTOCOL_VERSION
    assert reply.implementation.startswith("casi-learner/torch ")
    assert reply.device == "cpu"
    # trunk (3+1)*4, policy (4+1)*7, value (4+1)*1
    assert reply.n_params == 16 + 35 + 5
    recurrent = TorchNet().init(
        make_cfg(obs_dim=3, hidden_sizes=[4], head_sizes=[2, 5], recurrent=True)
    )
    assert recurrent.n_params == 56 + 2 * (4 * 4 * 4) + 2 * 4 * 4


def test_every_call_before_init_is_refused() -> None:
    net = TorchNet()
    calls = [
        lambda: net.init_hidden(1),
        lambda: net.predict(np.zeros((1, 4), np.float32)),
        lambda: net.reset_optimizer(make_cfg().optim),
        lambda: net.train(1, toy_batch()),
        net.get_params,
        lambda: net.set_params(Params({}, {}, 0)),
    ]
    for call in calls:
        expect_error("FAILED_PRECONDITION", call, "call Init first")


def test_protocol_mismatch_names_both_versions() -> None:
    expect_error(
        "FAILED_PRECONDITION",
        lambda: TorchNet().init(make_cfg(protocol_version=PROTOCOL_VERSION + 1)),
        f"protocol {PROTOCOL_VERSION}",
        f"sent {PROTOCOL_VERSION + 1}",
    )


BAD_CFGS = [
    ("obs_dim", {"obs_dim": 0}),
    ("head_sizes", {"head_sizes": []}),
    ("head_sizes", {"head_sizes": [3, 0]}),
    ("hidden_sizes", {"hidden_sizes": [16, -1]}),
    ("hidden_sizes", {"hidden_sizes": []}),
    ("loss", {"loss": net_pb2.LOSS_UNSPECIFIED}),
    ("optim.kind", {"optim": net_pb2.OptimCfg(lr=1e-3, eps=1e-5)}),
    ("optim.lr", {"optim": net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=0.0, eps=1e-5)}),
    ("optim.lr", {"optim": net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=math.nan)}),
    ("optim.eps", {"optim": net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=1e-3)}),
    ("optim.eps", {"optim": net_pb2.OptimCfg(kind=net_pb2.OPTIM_RMSPROP, lr=1e-3)}),
    ("epochs", {"epochs": 0}),
    ("minibatches", {"minibatches": 0}),
    ("clip", {"clip": 0.0}),
    ("max_grad_norm", {"max_grad_norm": math.nan}),
    ("activation", {"activation": 9}),
]


@pytest.mark.parametrize(("field", "change"), BAD_CFGS, ids=[f for f, _ in BAD_CFGS])
def test_bad_config_is_refused_naming_the_field(field: str, change: dict) -> None:
    net = make_net()
    before = snapshot(net)
    expect_error("INVALID_ARGUMENT", lambda: net.init(make_cfg(**change)), f"{field}:")
    assert_same_params(before, snapshot(net))  # the previous model is kept


def test_sgd_needs_no_eps_and_non_ppo_needs_no_clip() -> None:
    optim = net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=0.1)
    assert TorchNet().init(make_cfg(optim=optim, loss=net_pb2.LOSS_A2C, clip=0.0)).n_params > 0


def test_same_config_gives_bit_identical_parameters_and_init_starts_fresh() -> None:
    a, b = make_net(), make_net()
    assert_same_params(snapshot(a), snapshot(b))
    first = snapshot(a)
    a.train(1, toy_batch())
    a.init(make_cfg())
    assert_same_params(first, snapshot(a))
    a.train(1, toy_batch())  # step 1 again: the train steps were forgotten
    other = make_net(seed=8)
    assert not np.array_equal(
        first.tensors["trunk.0.weight"], snapshot(other).tensors["trunk.0.weight"]
    )


def test_init_leaves_the_global_torch_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_net()
    assert torch.equal(torch.rand(3), expected)


# -- Predict -------------------------------------------------------------------------------------


def test_predict_shapes_and_dtypes() -> None:
    net = make_net()
    logits, values = net.predict(np.zeros((5, 4), np.float32))
    assert logits.dtype == np.float32 and logits.shape == (5, 13)
    assert values.dtype == np.float32 and values.shape == (5,)


def test_predict_refuses_bad_observations_with_the_expected_and_received_shape() -> None:
    net = make_net(obs_dim=20)
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.predict(np.zeros((4, 19), np.float32)),
        "obs: expected float32 [B, 20], got float32 [4, 19]",
    )
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.predict(np.zeros((4, 20), np.float64)),
        "obs: expected float32 [B, 20], got float64 [4, 20]",
    )
    expect_error("INVALID_ARGUMENT", lambda: net.predict(np.zeros((0, 20), np.float32)), "obs")
    bad = np.zeros((2, 20), np.float32)
    bad[1, 3] = np.nan
    expect_error("INVALID_ARGUMENT", lambda: net.predict(bad), "obs", "[1, 3]")
    expect_error("INVALID_ARGUMENT", lambda: net.init_hidden(0), "batch")


def test_recurrent_predict_needs_the_init_hidden_batch() -> None:
    net = make_net(recurrent=True)
    obs = np.zeros((4, 4), np.float32)
    expect_error("FAILED_PRECONDITION", lambda: net.predict(obs), "InitHidden")
    net.init_hidden(8)
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.predict(obs),
        "obs: expected float32 [8, 4], got float32 [4, 4]",
    )


def test_recurrent_predict_step_by_step_matches_the_training_unroll() -> None:
    cfg = make_cfg(recurrent=True)
    net = TorchNet()
    net.init(cfg)
    obs = np.random.default_rng(3).normal(size=(3, 5, 4)).astype(np.float32)
    net.init_hidden(3)
    steps = [net.predict(obs[:, t]) for t in range(5)]
    model = ActorCritic(4, HEADS, [16, 16], recurrent=True)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in snapshot(net).tensors.items()})
    with torch.no_grad():
        logits, values = model.unroll(torch.from_numpy(obs))
    for t, (step_logits, step_values) in enumerate(steps):
        np.testing.assert_allclose(step_logits, logits[:, t].numpy(), atol=1e-6)
        np.testing.assert_allclose(step_values, values[:, t].numpy(), atol=1e-6)
    assert not np.allclose(steps[0][0], steps[1][0])  # the state carries over
    net.init_hidden(3)
    np.testing.assert_array_equal(net.predict(obs[:, 0])[0], steps[0][0])  # reset to zeros


# -- Train ---------------------------------------------------------------------------------------


def _replace(batch: Sequences, **kw: object) -> Sequences:
    return batch._replace(**kw)


def _bad_batches() -> list[tuple[str, Sequences, str]]:
    good = toy_batch()
    out_of_range = good.actions.copy()
    out_of_range[2, 1, 1] = 5
    nan_returns = good.returns.copy()
    nan_returns[0, 0] = np.inf
    half_mask = good.mask.copy()
    half_mask[1, 1] = 0.5
    return [
        ("obs", _replace(good, obs=good.obs[..., :3]), "obs: expected float32 [B, T, 4]"),
        ("obs-dtype", _replace(good, obs=good.obs.astype(np.float64)), "got float64"),
        (
            "actions",
            _replace(good, actions=good.actions.astype(np.int32)),
            "actions: expected int64 [6, 3, 3], got int32 [6, 3, 3]",
        ),
        ("actions-heads", _replace(good, actions=good.actions[..., :2]), "actions: expected"),
        ("actions-range", _replace(good, actions=out_of_range), "actions: head 1 has 5"),
        (
            "logp_old",
            _replace(good, logp_old=good.logp_old[:, :2]),
            "logp_old: expected float32 [6, 3], got float32 [6, 2]",
        ),
        ("values_old", _replace(good, values_old=good.values_old[:5]), "values_old:"),
        (
            "advantages",
            _replace(good, advantages=good.advantages.astype(np.float16)),
            "advantages:",
        ),
        ("returns", _replace(good, returns=nan_returns), "returns: expected finite"),
        ("mask", _replace(good, mask=half_mask), "mask: expected only 0 and 1"),
        ("mask-shape", _replace(good, mask=good.mask[None]), "mask:"),
    ]


@pytest.mark.parametrize("recurrent", [False, True])
def test_bad_sequences_are_refused_naming_the_field_and_change_nothing(recurrent: bool) -> None:
    net = make_net(recurrent=recurrent)
    before = snapshot(net)
    for _name, batch, fragment in _bad_batches():
        expect_error("INVALID_ARGUMENT", lambda b=batch: net.train(1, b), fragment)
    assert_same_params(before, snapshot(net))
    net.train(1, toy_batch())  # step 1 was never used up


@pytest.mark.parametrize("recurrent", [False, True])
def test_ppo_on_a_fixed_batch_lowers_its_own_loss(recurrent: bool) -> None:
    net = make_net(recurrent=recurrent, entropy_coef=0.0)
    batch = toy_batch()
    totals = []
    for step in range(1, 9):
        loss = net.train(step, batch)
        assert sorted(loss) == sorted(LOSS_FIELDS)
        totals.append(loss["policy_loss"] + 0.5 * loss["value_loss"])
    assert totals[-1] < totals[0] - 0.1, totals


def test_train_is_idempotent_by_step_and_refuses_older_steps() -> None:
    net = make_net()
    loss = net.train(3, toy_batch())
    after = snapshot(net)
    assert after.version == 3
    assert net.train(3, toy_batch(seed=9)) == loss
    assert_same_params(after, snapshot(net))
    expect_error("FAILED_PRECONDITION", lambda: net.train(2, toy_batch()), "step 2", "step 3")
    assert_same_params(after, snapshot(net))
    net.train(4, toy_batch())
    assert snapshot(net).version == 4


def test_set_params_resets_the_step_to_its_version() -> None:
    net = make_net()
    net.train(1, toy_batch())
    params = snapshot(net)
    net.set_params(params._replace(version=5))
    expect_error("FAILED_PRECONDITION", lambda: net.train(4, toy_batch()), "step 4", "step 5")
    expect_error("FAILED_PRECONDITION", lambda: net.train(5, toy_batch()), "step 5")
    net.train(6, toy_batch())
    assert snapshot(net).version == 6
    net.set_params(params._replace(version=0))
    net.train(1, toy_batch())


def test_training_is_deterministic_given_seed_and_steps() -> None:
    a, b = make_net(recurrent=True), make_net(recurrent=True)
    for step in (1, 2, 3):
        assert a.train(step, toy_batch(seed=step)) == b.train(step, toy_batch(seed=step))
    assert_same_params(snapshot(a), snapshot(b))


def test_ppo_takes_epochs_times_minibatches_optimizer_steps() -> None:
    net = make_net(epochs=3, minibatches=2)
    net.train(1, toy_batch())
    net.train(2, toy_batch())
    assert snapshot(net).optimizer["state.trunk.0.weight.step"] == 12.0


@pytest.mark.parametrize(
    "loss", [net_pb2.LOSS_A2C, net_pb2.LOSS_REINFORCE, net_pb2.LOSS_REINFORCE_BASELINE]
)
def test_other_losses_take_one_full_batch_step(loss: int) -> None:
    net = make_net(loss=loss, epochs=4, minibatches=4)
    before = snapshot(net)
    stats = net.train(1, toy_batch())
    params = snapshot(net)
    assert params.optimizer["state.trunk.0.weight.step"] == 1.0
    assert len(params.optimizer) == 3 * len(params.tensors)  # reinforce: value head included
    assert stats["clip_fraction"] == 0.0
    assert (stats["value_loss"] == 0.0) == (loss == net_pb2.LOSS_REINFORCE)
    value_moved = not np.array_equal(before.tensors["value.weight"], params.tensors["value.weight"])
    assert value_moved == (loss != net_pb2.LOSS_REINFORCE)


def _global_norm(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(((a[k] - b[k]).astype(np.float64) ** 2).sum()) for k in a))


@pytest.mark.parametrize("limit", [1e-3, 0.0])
def test_grad_norm_is_reported_before_clipping_and_the_step_is_clipped(limit: float) -> None:
    optim = net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=1.0)
    net = make_net(loss=net_pb2.LOSS_A2C, optim=optim, max_grad_norm=limit)
    before = snapshot(net).tensors
    stats = net.train(1, toy_batch())
    moved = _global_norm(before, snapshot(net).tensors)
    assert stats["grad_norm"] > 1e-2
    expected = limit if limit > 0 else stats["grad_norm"]
    assert moved == pytest.approx(expected, rel=1e-3)


def test_a_batch_without_acted_steps_changes_nothing() -> None:
    net = make_net()
    before = snapshot(net)
    batch = toy_batch()
    loss = net.train(1, batch._replace(mask=np.zeros_like(batch.mask)))
    assert loss == dict.fromkeys(LOSS_FIELDS, 0.0)
    assert_same_params(before, snapshot(net)._replace(version=0))


def _episode_update(model: ActorCritic, batch: Sequences, episode: int, lr: float) -> None:
    def pick(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x[[episode]]).reshape(-1)

    logits, values = model.unroll(torch.from_numpy(batch.obs[[episode]]))
    actions = torch.from_numpy(batch.actions[episode])
    logp = joint_log_prob(logits[0], actions, HEADS)
    total, _ = ppo_loss(
        logp,
        pick(batch.logp_old),
        pick(batch.advantages),
        values.reshape(-1),
        pick(batch.values_old),
        pick(batch.returns),
        torch.zeros_like(logp),
        pick(batch.mask),
        clip=0.2,
        value_coef=0.5,
        entropy_coef=0.0,
        clip_value=False,
    )
    model.zero_grad()
    total.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def test_recurrent_minibatches_are_whole_episodes() -> None:
    # two episodes, two minibatches, one epoch, plain SGD: the update must equal one SGD step
    # per whole episode, unrolled from a zero state, in one of the two orders
    lr = 0.5
    optim = net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=lr)
    net = make_net(
        recurrent=True, epochs=1, minibatches=2, optim=optim, max_grad_norm=0.0, entropy_coef=0.0
    )
    batch = toy_batch(b=2, t=4)
    start = snapshot(net).tensors
    net.train(1, batch)
    got = snapshot(net).tensors
    distances = []
    for order in ((0, 1), (1, 0)):
        model = ActorCritic(4, HEADS, [16, 16], recurrent=True)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in start.items()})
        for episode in order:
            _episode_update(model, batch, episode, lr)
        expected = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        distances.append(_global_norm(expected, got))
    assert min(distances) < 1e-5 < _global_norm(start, got), distances


# -- GetParams / SetParams / ResetOptimizer ------------------------------------------------------


def _trained(kind: int = net_pb2.OPTIM_ADAM, momentum: float = 0.0, steps: int = 3) -> TorchNet:
    optim = net_pb2.OptimCfg(kind=kind, lr=1e-2, eps=1e-5, momentum=momentum)
    net = make_net(optim=optim)
    for step in range(1, steps + 1):
        net.train(step, toy_batch(seed=step))
    return net


def test_params_are_contiguous_cpu_copies_named_as_documented() -> None:
    net = _trained()
    params = snapshot(net)
    assert set(params.tensors) == {
        f"{layer}.{kind}"
        for layer in ("trunk.0", "trunk.2", "policy", "value")
        for kind in ("weight", "bias")
    }
    expected = {f"state.{k}.{s}" for k in params.tensors for s in ("step", "exp_avg", "exp_avg_sq")}
    assert set(params.optimizer) == expected
    assert params.optimizer["state.trunk.0.weight.step"].shape == ()
    assert params.optimizer["state.trunk.0.weight.exp_avg"].shape == (16, 4)
    for array in (*params.tensors.values(), *params.optimizer.values()):
        assert array.flags.c_contiguous and array.flags.owndata
    params.tensors["policy.bias"][:] = 99.0  # a copy: the model is untouched
    assert not np.any(snapshot(net).tensors["policy.bias"] == 99.0)


@pytest.mark.parametrize(
    ("kind", "momentum"),
    [
        (net_pb2.OPTIM_ADAM, 0.0),
        (net_pb2.OPTIM_RMSPROP, 0.9),
        (net_pb2.OPTIM_RMSPROP, 0.0),
        (net_pb2.OPTIM_SGD, 0.9),
        (net_pb2.OPTIM_SGD, 0.0),
    ],
)
def test_get_set_params_round_trip_is_bit_exact(kind: int, momentum: float) -> None:
    source = _trained(kind, momentum)
    params = snapshot(source)
    slots = optimizer_slots(net_pb2.OptimCfg(kind=kind, momentum=momentum))
    assert {k.rsplit(".", 1)[1] for k in params.optimizer} == set(slots)
    target = _trained(kind, momentum, steps=1)
    target.set_params(params)
    assert_same_params(params, snapshot(target))
    # the optimizer state really is in use: the next update is the same on both
    source.train(4, toy_batch(seed=4))
    target.train(4, toy_batch(seed=4))
    assert_same_params(snapshot(source), snapshot(target))


@pytest.mark.parametrize(
    ("kind", "momentum"),
    [(net_pb2.OPTIM_ADAM, 0.0), (net_pb2.OPTIM_RMSPROP, 0.9), (net_pb2.OPTIM_SGD, 0.9)],
)
def test_the_multi_tensor_update_matches_the_per_parameter_loop(
    kind: int, momentum: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import casi_learner.torch_net as torch_net

    fast = _trained(kind, momentum)
    make = torch_net.make_optimizer

    def per_parameter(model: torch.nn.Module, optim: net_pb2.OptimCfg) -> torch.optim.Optimizer:
        opt = make(model, optim)
        opt.param_groups[0]["foreach"] = False
        return opt

    monkeypatch.setattr(torch_net, "make_optimizer", per_parameter)
    slow = _trained(kind, momentum)
    assert slow._optimizer().param_groups[0]["foreach"] is False
    assert fast._optimizer().param_groups[0]["foreach"] is True
    a, b = snapshot(fast), snapshot(slow)
    for key in a.tensors:
        np.testing.assert_allclose(a.tensors[key], b.tensors[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss", [net_pb2.LOSS_PPO, net_pb2.LOSS_REINFORCE])
def test_the_flat_adam_update_is_bit_for_bit_torchs(
    loss: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import casi_learner.torch_net as torch_net

    def run() -> tuple[Params, list[dict[str, float]]]:
        net = make_net(loss=loss, hidden_sizes=[37, 16])  # sizes that are not multiples of 16
        losses = [net.train(step, toy_batch(seed=step)) for step in (1, 2)]
        net.set_params(net.get_params())  # new state tensors: the buffers are laid out again
        losses += [net.train(step, toy_batch(seed=step)) for step in (3, 4)]
        net.reset_optimizer(make_cfg().optim)
        losses += [net.train(5, toy_batch(seed=5))]
        return snapshot(net), losses

    flat_steps = []
    step = torch_net._FlatAdam.step
    monkeypatch.setattr(
        torch_net._FlatAdam, "step", lambda self: flat_steps.append(step(self)) or flat_steps[-1]
    )
    fast = run()
    assert flat_steps and all(flat_steps)
    monkeypatch.setattr(torch_net._FlatAdam, "step", lambda self: False)  # torch's own step
    slow = run()
    assert_same_params(fast[0], slow[0])
    assert fast[1] == slow[1]


def test_set_params_with_an_empty_optimizer_starts_a_fresh_optimizer() -> None:
    net, other = _trained(), _trained()
    params = snapshot(net)
    net.set_params(params._replace(optimizer={}))
    assert snapshot(net).optimizer == {}
    other.reset_optimizer(make_cfg().optim)
    assert snapshot(other).optimizer == {}
    net.train(4, toy_batch())
    other.train(4, toy_batch())
    assert_same_params(snapshot(net), snapshot(other))


def _mutations() -> list[tuple[str, Callable[[Params], Params], str]]:
    def tensors(fn: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Params], Params]:
        def apply(p: Params) -> Params:
            t = dict(p.tensors)
            fn(t)
            return p._replace(tensors=t)

        return apply

    def optimizer(fn: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Params], Params]:
        def apply(p: Params) -> Params:
            t = dict(p.optimizer)
            fn(t)
            return p._replace(optimizer=t)

        return apply

    def nan(t: dict[str, np.ndarray], key: str) -> None:
        t[key] = t[key].copy()
        t[key].flat[-1] = np.nan

    return [
        ("missing", tensors(lambda t: t.pop("value.bias")), "'value.bias'"),
        (
            "extra",
            tensors(lambda t: t.update({"extra.weight": np.zeros(2, np.float32)})),
            "'extra.weight'",
        ),
        (
            "shape",
            tensors(lambda t: t.update({"policy.weight": np.zeros((13, 15), np.float32)})),
            "'policy.weight'",
        ),
        (
            "dtype",
            tensors(lambda t: t.update({"trunk.2.bias": t["trunk.2.bias"].astype(np.float64)})),
            "'trunk.2.bias'",
        ),
        ("not-array", tensors(lambda t: t.update({"trunk.2.bias": [0.0] * 16})), "'trunk.2.bias'"),
        ("nan", tensors(lambda t: nan(t, "trunk.0.weight")), "'trunk.0.weight'"),
        (
            "opt-missing",
            optimizer(lambda t: t.pop("state.value.weight.exp_avg_sq")),
            "'state.value.weight.exp_avg_sq'",
        ),
        ("opt-extra", optimizer(lambda t: t.update({"hyper.lr": np.float32(1.0)})), "'hyper.lr'"),
        (
            "opt-shape",
            optimizer(lambda t: t.update({"state.value.bias.step": np.ones(1, np.float32)})),
            "'state.value.bias.step'",
        ),
        (
            "opt-nan",
            optimizer(lambda t: nan(t, "state.policy.weight.exp_avg")),
            "'state.policy.weight.exp_avg'",
        ),
        ("version", lambda p: p._replace(version=-1), "version"),
    ]


@pytest.mark.parametrize("mutation", _mutations(), ids=[m[0] for m in _mutations()])
def test_bad_set_params_is_refused_and_leaves_everything_bit_identical(mutation: tuple) -> None:
    _, mutate, key = mutation
    net = _trained()
    before = snapshot(net)
    # every other entry is valid but different, so a partial load would show
    shifted = Params(
        {k: v + np.float32(1) for k, v in before.tensors.items()},
        {k: v + np.float32(1) for k, v in before.optimizer.items()},
        before.version + 1,
    )
    net.set_params(_trained(steps=1).get_params())  # a valid SetParams goes through
    net.set_params(before)
    expect_error("INVALID_ARGUMENT", lambda: net.set_params(mutate(shifted)), key)
    assert_same_params(before, snapshot(net))


def test_reset_optimizer_validates_and_switches_kind() -> None:
    net = _trained()
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.reset_optimizer(net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=-1.0, eps=1e-5)),
        "OptimCfg.lr",
    )
    assert len(snapshot(net).optimizer) > 0  # untouched by the refused call
    net.reset_optimizer(net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=0.1, momentum=0.9))
    net.train(4, toy_batch())
    assert {k.rsplit(".", 1)[1] for k in snapshot(net).optimizer} == {"momentum_buffer"}


# -- a contextual bandit, learned through TorchNet alone ------------------------------------------


def _sample(logits: np.ndarray, heads: list[int], rng: np.random.Generator) -> tuple:
    actions, logp, start = [], np.zeros(len(logits)), 0
    for size in heads:
        x = logits[:, start : start + size].astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        lsm = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        u = rng.random((len(x), 1))
        a = np.minimum((np.exp(lsm).cumsum(axis=1) < u).sum(axis=1), size - 1)
        actions.append(a)
        logp += lsm[np.arange(len(x)), a]
        start += size
    return np.stack(actions, axis=1).astype(np.int64), logp.astype(np.float32)


def _column(x: np.ndarray) -> np.ndarray:
    return x[:, None].astype(np.float32)


def _bandit_obs(bits: np.ndarray) -> np.ndarray:
    return np.stack([bits, np.ones_like(bits)], axis=1).astype(np.float32)


def _prob_of(net: TorchNet, bits: np.ndarray, target: np.ndarray) -> np.ndarray:
    logits = net.predict(_bandit_obs(bits))[0][:, :2].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True))[np.arange(len(bits)), target]


@pytest.mark.parametrize("wanted", ["bit", "not bit"])
def test_ppo_learns_a_contextual_bandit(wanted: str) -> None:
    # obs = (bit, 1); reward 1 when the main head (2 actions) picks the wanted one; a second
    # head of 5 intentions is sampled and trained alongside but never rewarded
    heads, b = [2, 5], 256
    optim = net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=3e-3, eps=1e-5)
    net = TorchNet()
    net.init(
        make_cfg(
            obs_dim=2, head_sizes=heads, hidden_sizes=[32, 32], optim=optim, epochs=4, minibatches=4
        )
    )
    rng = np.random.default_rng(11)
    eval_bits = np.arange(512) % 2
    target = eval_bits if wanted == "bit" else 1 - eval_bits
    assert abs(_prob_of(net, eval_bits, target).mean() - 0.5) < 0.05  # small initial policy
    for step in range(1, 21):
        bits = rng.integers(0, 2, b)
        obs = _bandit_obs(bits)
        logits, values = net.predict(obs)
        actions, logp = _sample(logits, heads, rng)
        good = bits if wanted == "bit" else 1 - bits
        reward = (actions[:, 0] == good).astype(np.float32)
        batch = Sequences(
            obs[:, None],
            actions[:, None],
            _column(logp),
            _column(values),
            _column(reward - values),
            _column(reward),
            np.ones((b, 1), np.float32),
        )
        net.train(step, batch)
    prob = _prob_of(net, eval_bits, target)
    assert (prob > 0.5).mean() > 0.95  # greedy accuracy
    assert prob.mean() > 0.95


def test_huge_init_hidden_is_refused_quickly_and_keeps_the_state() -> None:
    import time

    net = make_net(recurrent=True)
    net.init_hidden(3)
    obs = np.ones((3, 4), np.float32)
    started = time.perf_counter()
    expect_error(
        "INVALID_ARGUMENT", lambda: net.init_hidden(20_000_000), "HiddenCfg.batch", "at most"
    )
    assert time.perf_counter() - started < 1.0
    assert net.predict(obs)[0].shape == (3, sum(HEADS))  # the batch of 3 still holds


def test_rows_are_capped_by_the_activation_memory_of_a_wide_model() -> None:
    from casi_learner.torch_net import MAX_ROW_BYTES

    net = make_net(hidden_sizes=[65536])
    limit = MAX_ROW_BYTES // (65536 * 8)
    assert net.predict(np.ones((2, 4), np.float32))[0].shape == (2, sum(HEADS))
    err = expect_error(
        "INVALID_ARGUMENT",
        lambda: net.predict(np.ones((limit + 1, 4), np.float32)),
        f"obs: {limit + 1} rows of a model 65536 wide",
        f"at most {limit} rows",
    )
    assert str(MAX_ROW_BYTES) in err.message
    expect_error("INVALID_ARGUMENT", lambda: net.init_hidden(limit + 1), "HiddenCfg.batch")


def test_init_refuses_a_model_above_the_parameter_limit_before_building_it() -> None:
    import time

    net = TorchNet(max_params=1000)
    cfg = make_cfg(hidden_sizes=[64])
    started = time.perf_counter()
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.init(cfg),
        "NetCfg.hidden_sizes: [64] make a model of",
        "limit of 1000",
        "--max-params",
    )
    assert time.perf_counter() - started < 1.0
    expect_error("FAILED_PRECONDITION", lambda: net.predict(np.ones((1, 4), np.float32)), "Init")
    assert TorchNet(max_params=10_000).init(cfg).n_params < 10_000


def test_the_default_parameter_limit_follows_the_message_limit() -> None:
    import time

    from casi_learner.torch_net import MAX_PARAMS, params_limit

    assert MAX_PARAMS == params_limit(256)
    started = time.perf_counter()  # the hidden [10**7]: 1.24 GB of parameters
    expect_error("INVALID_ARGUMENT", lambda: TorchNet().init(make_cfg(hidden_sizes=[10**7])))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("loss", [net_pb2.LOSS_PPO, net_pb2.LOSS_A2C])
def test_a_model_at_the_parameter_limit_fits_the_message_limit(loss: int) -> None:
    from casi_learner.torch_net import params_limit
    from casi_proto import codec

    # about params_limit(1) parameters: the largest model a 1 MB message limit admits
    limit = params_limit(1)
    width = next(w for w in range(4000, 1, -1) if _params_of(w) <= limit)
    net = TorchNet(max_params=limit)
    net.init(make_cfg(hidden_sizes=[width], loss=loss, obs_dim=8))
    with pytest.raises(NetError):
        TorchNet(max_params=limit).init(make_cfg(hidden_sizes=[width + 2], obs_dim=8))
    rng = np.random.default_rng(0)
    b, t = 2, 3
    net.train(
        1,
        Sequences(
            obs=rng.random((b, t, 8), dtype=np.float32),
            actions=np.zeros((b, t, len(HEADS)), np.int64),
            logp_old=np.full((b, t), -3.0, np.float32),
            values_old=np.zeros((b, t), np.float32),
            advantages=np.ones((b, t), np.float32),
            returns=np.ones((b, t), np.float32),
            mask=np.ones((b, t), np.float32),
        ),
    )
    size = codec.params_to_proto(net.get_params()).ByteSize()
    assert size <= 2**20, f"GetParams of {width} wide is {size} bytes"


def _params_of(width: int, obs_dim: int = 8) -> int:
    return (obs_dim + 1) * width + (width + 1) * (sum(HEADS) + 1)


def _extreme(batch: Sequences, field: str) -> Sequences:
    x = np.full_like(getattr(batch, field), 3e38)
    x.flat[::2] = -3e38
    return batch._replace(**{field: x})


POISON = [
    (net_pb2.LOSS_PPO, "advantages"),
    (net_pb2.LOSS_PPO, "returns"),
    (net_pb2.LOSS_PPO, "logp_old"),
    (net_pb2.LOSS_A2C, "returns"),
    (net_pb2.LOSS_REINFORCE, "returns"),
    (net_pb2.LOSS_REINFORCE_BASELINE, "returns"),
]


@pytest.mark.parametrize(("loss", "field"), POISON)
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
def test_extreme_train_inputs_change_nothing_and_fail_with_a_sentence(
    loss: int, field: str, trained: bool
) -> None:
    net = make_net(loss=loss, recurrent=trained)
    if trained:  # with optimizer state to keep
        net.train(1, toy_batch())
    before = snapshot(net)
    expect_error(
        "INVALID_ARGUMENT",
        lambda: net.train(2, _extreme(toy_batch(seed=1), field)),
        "Train step 2: the update gave a non-finite",
        f"|{field}| = 3e+38",
        "as before this call",
    )
    assert_same_params(before, snapshot(net))
    # the same step is tried again (no stored loss), then the model trains on
    expect_error("INVALID_ARGUMENT", lambda: net.train(2, _extreme(toy_batch(), field)))
    stats = net.train(2, toy_batch(seed=2))
    assert all(math.isfinite(v) for v in stats.values())
    after = snapshot(net)
    assert after.version == 2
    assert all(np.isfinite(v).all() for v in [*after.tensors.values(), *after.optimizer.values()])
