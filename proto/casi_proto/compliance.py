"""Contract tests that any implementation of the Net service can run unchanged.

Subclass :class:`NetContract` in a pytest module (name the subclass ``Test...``)
and provide an ``address`` fixture that starts a fresh server and yields its
``host:port``; declare what the implementation can do with the class flags::

    class TestMyNet(NetContract):
        trainable = True

        @pytest.fixture
        def address(self):
            with serving(MyNet()) as address:  # casi_learner.server.serving
                yield address

The tests talk to the server through :class:`~casi_proto.client.NetClient`
and, for malformed messages the client would never send, through the raw stub.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2, net_pb2_grpc

from casi_proto import PROTOCOL_VERSION
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.client import NetClient
from casi_proto.codec import to_tensor
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NetError

RawCall = Callable[[str, Any], Any]


def expect_error(code: str, call: Callable[[], Any], *words: str) -> NetError:
    """Run ``call``; assert it raises a NetError with ``code`` whose message has ``words``."""
    with pytest.raises(NetError) as info:
        call()
    err = info.value
    assert err.code == code, f"expected {code}, got {err}"
    for word in words:
        assert word in err.message, f"{word!r} not in the message {err.message!r}"
    return err


def assert_params_equal(a: Params, b: Params) -> None:
    """Bit-exact equality of two Params (key sets, dtypes, shapes, bytes, version)."""
    assert a.version == b.version
    for kind in ("tensors", "optimizer"):
        x, y = getattr(a, kind), getattr(b, kind)
        assert sorted(x) == sorted(y), f"{kind} keys differ"
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, f"{kind}[{k}]"
            assert x[k].tobytes() == y[k].tobytes(), f"{kind}[{k}] differs"


def raw_tensor(dtype: int, shape: list[int], data: bytes) -> net_pb2.Tensor:
    """A Tensor exactly as given, even if invalid (for malformed-request tests)."""
    return net_pb2.Tensor(dtype=dtype, shape=shape, data=data)  # type: ignore[arg-type]


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class NetContract:
    """Base class of the contract tests; see the module docstring."""

    #: Train changes the parameters (False for scripted policies).
    trainable: ClassVar[bool] = True
    #: GetParams returns model tensors (False for scripted policies).
    has_params: ClassVar[bool] = True
    #: Bearer token the server was started with, if any.
    token: ClassVar[str | None] = None
    obs_dim: ClassVar[int] = 10
    head_sizes: ClassVar[tuple[int, ...]] = (9, 5, 5)

    # -- fixtures ---------------------------------------------------------------

    @pytest.fixture
    def address(self) -> Iterator[str]:
        raise NotImplementedError("a NetContract subclass provides an `address` fixture")

    @pytest.fixture
    def client(self, address: str) -> Iterator[NetClient]:
        with NetClient(address, name="contract", token=self.token, timeout=30.0) as c:
            c.wait_ready(10.0)
            yield c

    @pytest.fixture
    def ready(self, client: NetClient) -> NetClient:
        client.init(self.make_cfg())
        return client

    @pytest.fixture
    def raw(self, address: str) -> Iterator[RawCall]:
        """``raw(method, request)`` on the bare stub; failures become NetError."""
        channel = grpc.insecure_channel(address)
        stub = net_pb2_grpc.NetStub(channel)
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None

        def call(method: str, request: Any) -> Any:
            try:
                return getattr(stub, method)(request, timeout=30.0, metadata=metadata)
            except grpc.RpcError as exc:
                raise NetError(exc.code().name, exc.details() or "") from None  # type: ignore[attr-defined]

        yield call
        channel.close()

    # -- helpers ----------------------------------------------------------------

    def make_cfg(self, **changes: Any) -> net_pb2.NetCfg:
        cfg = net_pb2.NetCfg(
            protocol_version=PROTOCOL_VERSION,
            obs_dim=self.obs_dim,
            head_sizes=list(self.head_sizes),
            hidden_sizes=[16],
            seed=7,
            loss=net_pb2.LOSS_PPO,
            optim=net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=1e-2, eps=1e-5),
            clip=0.2,
            value_coef=0.5,
            entropy_coef=0.01,
            epochs=2,
            minibatches=2,
            max_grad_norm=0.5,
            activation=net_pb2.ACTIVATION_TANH,
        )
        for key, value in changes.items():
            field = getattr(cfg, key)
            if isinstance(value, list):
                del field[:]
                field.extend(value)
            else:
                setattr(cfg, key, value)
        return cfg

    def make_obs(self, batch: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random((batch, self.obs_dim), dtype=np.float32)

    def make_sequences(self, net: NetClient, b: int = 4, t: int = 3, seed: int = 0) -> Sequences:
        """A plausible rollout: actions sampled from the net, logp_old and values_old its own."""
        rng = np.random.default_rng(seed)
        obs = rng.random((b * t, self.obs_dim), dtype=np.float32)
        logits, values = net.predict(obs)
        actions = np.zeros((b * t, len(self.head_sizes)), np.int64)
        logp = np.zeros(b * t, np.float32)
        start = 0
        for h, size in enumerate(self.head_sizes):
            lp = log_softmax(logits[:, start : start + size].astype(np.float64))
            actions[:, h] = [rng.choice(size, p=np.exp(row) / np.exp(row).sum()) for row in lp]
            logp += lp[np.arange(b * t), actions[:, h]].astype(np.float32)
            start += size
        adv = rng.standard_normal((b, t)).astype(np.float32)
        return Sequences(
            obs=obs.reshape(b, t, self.obs_dim),
            actions=actions.reshape(b, t, -1),
            logp_old=logp.reshape(b, t),
            values_old=values.reshape(b, t).astype(np.float32),
            advantages=adv,
            returns=(adv + values.reshape(b, t)).astype(np.float32),
            mask=np.ones((b, t), np.float32),
        )

    # -- Init -------------------------------------------------------------------

    def test_init_reply(self, client: NetClient) -> None:
        reply = client.init(self.make_cfg())
        assert reply.protocol_version == PROTOCOL_VERSION
        assert reply.implementation and reply.device
        assert reply.n_params > 0 if self.has_params else reply.n_params >= 0

    def test_protocol_mismatch_names_both_versions(self, client: NetClient) -> None:
        other = PROTOCOL_VERSION + 41
        err = expect_error(
            FAILED_PRECONDITION,
            lambda: client.init(self.make_cfg(protocol_version=other)),
            str(other),
        )
        assert re.search(rf"\b{PROTOCOL_VERSION}\b", err.message), err.message
        client.init(self.make_cfg())  # the learner is still usable

    def test_bad_head_sizes_refused(self, client: NetClient) -> None:
        bad = [self.head_sizes[0], 4]
        expect_error(INVALID_ARGUMENT, lambda: client.init(self.make_cfg(head_sizes=bad)))

    def test_predict_before_init(self, client: NetClient) -> None:
        expect_error(FAILED_PRECONDITION, lambda: client.predict(self.make_obs(2)), "Init")

    def test_errors_name_the_agent(self, client: NetClient) -> None:
        err = expect_error(FAILED_PRECONDITION, lambda: client.predict(self.make_obs(2)))
        assert err.message.startswith(f"agent contract at {client.address}: ")

    def test_init_again_starts_fresh(self, ready: NetClient) -> None:
        first = ready.get_params()
        obs = self.make_obs(3)
        before = ready.predict(obs)
        ready.train(1, self.make_sequences(ready))
        ready.init(self.make_cfg())
        again = ready.get_params()
        assert again.version == 0
        assert_params_equal(
            Params(first.tensors, {}, first.version), Params(again.tensors, {}, again.version)
        )
        np.testing.assert_array_equal(ready.predict(obs)[0], before[0])
        ready.train(1, self.make_sequences(ready))  # step 1 is new again

    def test_init_hidden(self, ready: NetClient) -> None:
        ready.init_hidden(4)
        expect_error(INVALID_ARGUMENT, lambda: ready.init_hidden(0), "batch")

    def test_feed_forward_predict_needs_no_init_hidden(self, ready: NetClient) -> None:
        # the orchestrator calls InitHidden for recurrent models only
        for batch in (3, 5):
            logits, values = ready.predict(self.make_obs(batch))
            assert logits.shape[0] == values.shape[0] == batch
        ready.init_hidden(4)
        assert ready.predict(self.make_obs(6))[1].shape == (6,)

    # -- Predict ----------------------------------------------------------------

    @pytest.mark.parametrize("batch", [1, 5])
    def test_predict_shapes_and_dtypes(self, ready: NetClient, batch: int) -> None:
        logits, values = ready.predict(self.make_obs(batch))
        assert logits.dtype == np.float32 and logits.shape == (batch, sum(self.head_sizes))
        assert values.dtype == np.float32 and values.shape == (batch,)
        assert np.isfinite(logits).all() and np.isfinite(values).all()

    def test_predict_is_a_function_of_obs(self, ready: NetClient) -> None:
        obs = self.make_obs(4, seed=3)
        a, b = ready.predict(obs), ready.predict(obs)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])

    @pytest.mark.parametrize("kind", ["wide", "narrow", "1d", "3d"])
    def test_bad_obs_shape(self, ready: NetClient, kind: str) -> None:
        d = self.obs_dim
        shape = {"wide": (3, d + 1), "narrow": (3, d - 1), "1d": (d,), "3d": (2, 3, d)}[kind]
        got = "[" + ", ".join(str(n) for n in shape) + "]"
        obs = np.zeros(shape, np.float32)
        expect_error(INVALID_ARGUMENT, lambda: ready.predict(obs), "obs", got)

    def test_bad_obs_dtype(self, ready: NetClient) -> None:
        obs = self.make_obs(2).astype(np.float64)
        expect_error(INVALID_ARGUMENT, lambda: ready.predict(obs), "obs", "float64", "float32")

    def test_bad_obs_byte_length(self, ready: NetClient, raw: RawCall) -> None:
        t = to_tensor(self.make_obs(4))
        t.data = t.data[:-3]
        needed = str(4 * self.obs_dim * 4)
        request = net_pb2.Observations(obs=t)
        expect_error(INVALID_ARGUMENT, lambda: raw("Predict", request), "obs", needed)

    def test_garbage_never_kills_the_server(self, ready: NetClient, raw: RawCall) -> None:
        d = self.obs_dim
        garbage = [
            net_pb2.Tensor(),
            raw_tensor(99, [1, d], b"\0" * 4 * d),  # no such dtype
            raw_tensor(net_pb2.DTYPE_FLOAT32, [-1, d], b""),
            raw_tensor(net_pb2.DTYPE_FLOAT32, [2**40, 2**40], b"x"),
            raw_tensor(net_pb2.DTYPE_BOOL, [1, d], b"\7" * d),  # bool bytes must be 0 or 1
        ]
        for tensor in garbage:
            request = net_pb2.Observations(obs=tensor)
            expect_error(INVALID_ARGUMENT, partial(raw, "Predict", request), "obs")
        expect_error(INVALID_ARGUMENT, lambda: raw("Train", net_pb2.Sequences(step=1)), "obs")
        bad_params = net_pb2.Params(tensors={"w": raw_tensor(net_pb2.DTYPE_FLOAT32, [3], b"")})
        expect_error(INVALID_ARGUMENT, lambda: raw("SetParams", bad_params), "w")
        logits, _ = ready.predict(self.make_obs(2))
        assert logits.shape == (2, sum(self.head_sizes))

    # -- Train ------------------------------------------------------------------

    def test_train_returns_finite_losses(self, ready: NetClient) -> None:
        before = ready.get_params()
        stats = ready.train(1, self.make_sequences(ready))
        assert sorted(stats) == sorted(LOSS_FIELDS)
        assert all(np.isfinite(v) for v in stats.values()), stats
        after = ready.get_params()
        assert after.version == 1
        if self.trainable:
            changed = [
                k for k in before.tensors if not np.array_equal(before.tensors[k], after.tensors[k])
            ]
            assert changed, "Train changed no parameter"

    def test_train_retry_returns_the_same_loss_and_changes_nothing(self, ready: NetClient) -> None:
        batch = self.make_sequences(ready)
        first = ready.train(1, batch)
        params = ready.get_params()
        assert ready.train(1, batch) == first
        assert_params_equal(ready.get_params(), params)
        second = ready.train(2, self.make_sequences(ready, seed=1))
        assert ready.get_params().version == 2
        assert ready.train(2, batch) == second

    def test_train_older_step_refused(self, ready: NetClient) -> None:
        ready.train(1, self.make_sequences(ready))
        ready.train(2, self.make_sequences(ready, seed=1))
        params = ready.get_params()
        with pytest.raises(NetError) as info:
            ready.train(1, self.make_sequences(ready, seed=2))
        assert info.value.code in (FAILED_PRECONDITION, INVALID_ARGUMENT), str(info.value)
        assert_params_equal(ready.get_params(), params)

    def test_train_bad_shapes(self, ready: NetClient) -> None:
        good = self.make_sequences(ready)
        b, t = good.mask.shape
        cases = {
            "actions": good._replace(actions=good.actions[:, :, :-1].copy()),
            "mask": good._replace(mask=np.ones((b, t + 1), np.float32)),
            "advantages": good._replace(advantages=good.advantages.astype(np.float64)),
            "obs": good._replace(obs=np.zeros((b, t, self.obs_dim + 1), np.float32)),
        }
        for field, batch in cases.items():
            expect_error(INVALID_ARGUMENT, partial(ready.train, 1, batch), field)
        out_of_range = good.actions.copy()
        out_of_range[0, 0, 0] = self.head_sizes[0]
        expect_error(
            INVALID_ARGUMENT, lambda: ready.train(1, good._replace(actions=out_of_range)), "actions"
        )
        assert ready.get_params().version == 0
        ready.train(1, good)

    # -- Params -----------------------------------------------------------------

    def test_params_round_trip_bit_exact(self, ready: NetClient) -> None:
        obs = self.make_obs(3)
        start = ready.get_params()
        before = ready.predict(obs)
        ready.train(1, self.make_sequences(ready))
        trained = ready.get_params()
        ready.set_params(start)
        assert_params_equal(ready.get_params(), start)
        np.testing.assert_array_equal(ready.predict(obs)[0], before[0])
        ready.set_params(trained)
        assert_params_equal(ready.get_params(), trained)

    @pytest.mark.parametrize("flaw", ["extra_key", "missing_key", "shape", "dtype", "nan"])
    def test_bad_set_params_changes_nothing(self, ready: NetClient, flaw: str) -> None:
        ready.train(1, self.make_sequences(ready))
        good = ready.get_params()
        tensors = dict(good.tensors)
        if flaw != "extra_key" and not tensors:
            pytest.skip("this implementation has no parameters")
        key = sorted(tensors)[0] if tensors else "bogus.weight"
        if flaw == "extra_key":
            key = "bogus.weight"
            tensors[key] = np.zeros(3, np.float32)
        elif flaw == "missing_key":
            del tensors[key]
        elif flaw == "shape":
            tensors[key] = np.zeros((*tensors[key].shape, 2), tensors[key].dtype)
        elif flaw == "dtype":
            other = np.float64 if tensors[key].dtype == np.float32 else np.float32
            tensors[key] = tensors[key].astype(other)
        else:
            tensors[key] = tensors[key].copy()
            tensors[key].flat[0] = np.nan
        expect_error(
            INVALID_ARGUMENT, lambda: ready.set_params(good._replace(tensors=tensors)), key
        )
        assert_params_equal(ready.get_params(), good)

    def test_set_params_bad_byte_length(self, ready: NetClient, raw: RawCall) -> None:
        good = ready.get_params()
        key = sorted(good.tensors)[0] if good.tensors else "bogus.weight"
        msg = net_pb2.Params(tensors={key: raw_tensor(net_pb2.DTYPE_FLOAT32, [2, 3], b"\0" * 5)})
        expect_error(INVALID_ARGUMENT, lambda: raw("SetParams", msg), key, "24")
        assert_params_equal(ready.get_params(), good)

    # -- ResetOptimizer -----------------------------------------------------------

    def test_reset_optimizer(self, ready: NetClient) -> None:
        ready.train(1, self.make_sequences(ready))
        before = ready.get_params()
        ready.reset_optimizer(self.make_cfg().optim)
        assert_params_equal(
            Params(ready.get_params().tensors, {}, 0), Params(before.tensors, {}, 0)
        )
        bad = net_pb2.OptimCfg(kind=net_pb2.OPTIM_UNSPECIFIED, lr=1e-3)
        expect_error(INVALID_ARGUMENT, lambda: ready.reset_optimizer(bad))
        ready.train(2, self.make_sequences(ready, seed=1))
