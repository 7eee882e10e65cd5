"""The PyTorch implementation of the Net contract (``casi_proto.api.Net``), without grpc.

State naming in :class:`casi_proto.api.Params`:

- ``tensors``: the model's ``state_dict`` (see :mod:`casi_learner.model`), float32.
- ``optimizer``: one entry per (parameter, slot), named ``state.<param name>.<slot>``, e.g.
  ``state.trunk.0.weight.exp_avg``. Slots by optimizer kind:
  adam ``step``, ``exp_avg``, ``exp_avg_sq``; rmsprop ``step``, ``square_avg`` and, with
  momentum > 0, ``momentum_buffer``; sgd ``momentum_buffer`` with momentum > 0, else none.
  ``step`` is a float32 scalar (shape ``[]``), every other slot a float32 tensor of its
  parameter's shape. Hyperparameters are not part of the state: they come from ``NetCfg`` and
  ``ResetOptimizer``. The map is empty until the first Train; SetParams accepts either an
  empty map (fresh optimizer state) or exactly the full set.
- ``version``: the step of the last applied Train (0 if none). Steps should start at 1: after
  SetParams with version 0 any step is accepted.

Train shuffles minibatches with a generator seeded by ``(NetCfg.seed, step)``, so an update is
a pure function of the parameters, the optimizer state, the batch, the seed and the step.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import NamedTuple, cast

import numpy as np
import torch
from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import invalid, precondition
from casi_proto.names import ACTIVATION_NAMES, OPTIM_NAMES
from casi_proto.sizes import n_params
from casi_proto.validate import (
    SEQUENCE_FLOATS,
    check_hidden_batch,
    check_net_cfg,
    check_optim_cfg,
    check_predict_obs,
    check_sequences,
    check_slots_cfg,
    check_state,
    check_version,
    is_repeat,
)

from casi_learner import losses
from casi_learner.device import resolve_device
from casi_learner.model import ActorCritic, Hidden, joint_entropy, joint_log_prob
from casi_learner.slots import SlotActorCritic

Model = ActorCritic | SlotActorCritic
BYTES_PER_PARAM = 16


def params_limit(max_message_mb: int) -> int:
    """The most parameters a model may have so that its GetParams fits a message of
    ``max_message_mb``: 4 bytes for the parameter and for each of Adam's two slots, and 4 to
    spare for the names and the rest of the message (``BYTES_PER_PARAM``)."""
    return max_message_mb * 2**20 // BYTES_PER_PARAM


MAX_PARAMS = params_limit(256)
"""The default parameter limit: what fits casi-learner's default --max-message-mb 256."""
MAX_ROW_BYTES = 1 << 30
"""The most memory one Predict's activations, or the hidden state of InitHidden, may take:
rows x the widest layer x 8 bytes (two float32 per unit: activation and hidden, or h and c)."""


def _implementation() -> str:
    try:
        version = metadata.version("casi-learner")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"casi-learner/torch {version}"


def _tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    if not (x.flags.writeable and x.flags.c_contiguous):
        x = np.array(x, order="C")
    return torch.from_numpy(x).to(device)


def check_cfg(cfg: net_pb2.NetCfg, max_params: int = MAX_PARAMS) -> None:
    """The contract's checks (casi_proto.validate), then what this model needs besides."""
    check_net_cfg(cfg)
    if not cfg.hidden_sizes:
        raise invalid("NetCfg.hidden_sizes: expected at least one hidden layer, got []")
    slots = cfg.model == net_pb2.MODEL_SLOTS
    if slots:
        check_slots_cfg(cfg)
    n = n_params(
        cfg.obs_dim, cfg.head_sizes, cfg.hidden_sizes, cfg.recurrent,
        cfg.game.agents if slots else None,
    )  # fmt: skip
    if n > max_params:
        sizes = list(cfg.hidden_sizes) if len(cfg.hidden_sizes) <= 16 else "(many layers)"
        raise invalid(
            f"NetCfg.hidden_sizes: {sizes} make a model of {n} parameters, more than this "
            f"learner's limit of {max_params} (casi-learner --max-params; by default what "
            "fits a GetParams reply of --max-message-mb)"
        )


def optimizer_slots(optim: net_pb2.OptimCfg) -> tuple[str, ...]:
    """The state slots an optimizer of this kind keeps per parameter."""
    momentum = ("momentum_buffer",) if optim.momentum > 0 else ()
    if optim.kind == net_pb2.OPTIM_ADAM:
        return ("step", "exp_avg", "exp_avg_sq")
    if optim.kind == net_pb2.OPTIM_RMSPROP:
        return ("step", "square_avg", *momentum)
    return momentum


def make_optimizer(model: torch.nn.Module, optim: net_pb2.OptimCfg) -> torch.optim.Optimizer:
    """The optimizer of ``optim``, with the multi-tensor (``foreach``) update.

    torch picks the per-parameter loop on CPU; ``foreach`` gives the same numbers (bit for bit
    on the exp2_honest model) in a few percent less time (docs/performance.md).
    """
    params = list(model.parameters())
    if optim.kind == net_pb2.OPTIM_ADAM:
        return torch.optim.Adam(params, lr=optim.lr, eps=optim.eps, foreach=True)
    if optim.kind == net_pb2.OPTIM_RMSPROP:
        return torch.optim.RMSprop(
            params, lr=optim.lr, eps=optim.eps, momentum=optim.momentum, foreach=True
        )
    return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, foreach=True)


ALIGN = 16
"""Floats between the starts of two tensors in a flat buffer (64 bytes): every parameter keeps
the alignment it would have on its own, which the matrix kernels' rounding may depend on."""


class _FlatAdam:
    """The update of ``torch.optim.Adam(foreach=True)``, op for op and bit for bit, on one flat
    buffer per quantity (parameters, moments) instead of one tensor each.

    On CPU torch's multi-tensor kernels loop over the tensors; here each of the update's
    elementwise ops runs once over all the parameters, and those ops give every element the
    same result wherever it lies in a tensor. The parameters and the optimizer's state tensors
    become views of the buffers (``bind``), so the model, GetParams and SetParams see the usual
    tensors. Anything else (another optimizer, a state whose steps differ between parameters,
    options the experiments do not use) goes to torch's own step.
    """

    def __init__(self, model: torch.nn.Module, optim: torch.optim.Optimizer) -> None:
        self.optim = optim
        self.params = list(model.parameters())
        sizes = [p.numel() for p in self.params]
        padded = [-(-n // ALIGN) * ALIGN for n in sizes]
        self.spans = [(int(o), n) for o, n in zip(np.cumsum([0, *padded[:-1]]), sizes, strict=True)]
        self.length = sum(padded)
        self.flat: dict[str, torch.Tensor] = {}

    def usable(self) -> bool:
        if not isinstance(self.optim, torch.optim.Adam) or len(self.optim.param_groups) != 1:
            return False
        group = self.optim.param_groups[0]
        plain = not (group["amsgrad"] or group["maximize"] or group["capturable"])
        plain = plain and not (group["differentiable"] or group["fused"])
        return plain and group["weight_decay"] == 0 and group["foreach"]

    def _views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        return [
            buffer[o : o + n].view_as(p) for (o, n), p in zip(self.spans, self.params, strict=True)
        ]

    def _gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        buffer = self.params[0].new_zeros(self.length)
        for view, t in zip(self._views(buffer), tensors, strict=True):
            view.copy_(t)
        return buffer

    def _bound(self, name: str, tensors: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """None if ``tensors`` are the views of buffer ``name``, else the views of a new one."""
        buffer = self.flat.get(name)
        if buffer is not None:
            views = self._views(buffer)
            if all(t.data_ptr() == v.data_ptr() for t, v in zip(tensors, views, strict=True)):
                return None
        self.flat[name] = self._gather(tensors)
        return self._views(self.flat[name])

    def bind(self) -> None:
        """Makes the parameters and the state views of flat buffers, unless they are already."""
        state = self.optim.state
        if not all(p in state for p in self.params):
            for p in self.params:  # as torch's Adam starts its state
                state[p] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        views = self._bound("param", [p.data for p in self.params])
        for p, view in zip(self.params, views or [], strict=False):
            p.data = view
        for name in ("exp_avg", "exp_avg_sq"):
            views = self._bound(name, [state[p][name] for p in self.params])
            for p, view in zip(self.params, views or [], strict=False):
                state[p][name] = view

    def step(self) -> bool:
        """One Adam step; False (nothing done) where torch's own step must do it."""
        if not self.usable():
            return False
        self.bind()
        state = self.optim.state
        steps = [state[p]["step"] for p in self.params]
        grads = [p.grad for p in self.params]
        if len({float(s) for s in steps}) != 1 or any(g is None for g in grads):
            return False
        group = self.optim.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grad = self._gather(cast(list[torch.Tensor], grads))
        exp_avg, exp_avg_sq = self.flat["exp_avg"], self.flat["exp_avg_sq"]
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = steps[0].item()
        step_size = (lr / (1 - beta1**step)) * -1
        denom = exp_avg_sq.sqrt()
        denom.div_((1 - beta2**step) ** 0.5)
        denom.add_(eps)
        self.flat["param"].addcdiv_(exp_avg, denom, value=step_size)
        return True


class _Batch(NamedTuple):
    """Train data on the device, one row per unit: an episode [B, T, ...] (recurrent) or an
    acted step [N, ...]. ``floats`` holds SEQUENCE_FLOATS field-major, [5, B, T] or [5, N]: a
    minibatch is three gathers (four with the action mask) and each of its fields a view."""

    obs: torch.Tensor
    actions: torch.Tensor
    floats: torch.Tensor
    allowed: torch.Tensor | None  # bool, as obs, [..., sum(heads)]: Sequences.action_mask

    def rows(self, idx: torch.Tensor) -> _Batch:
        """The units ``idx``: one gather per tensor, each field of the result contiguous."""
        pick = idx.to(self.obs.device)
        allowed = None if self.allowed is None else self.allowed.index_select(0, pick)
        obs, actions = self.obs.index_select(0, pick), self.actions.index_select(0, pick)
        return _Batch(obs, actions, self.floats.index_select(1, pick), allowed)

    def field(self, name: str) -> torch.Tensor:
        """One of SEQUENCE_FLOATS, flat over the steps of these units."""
        return self.floats[SEQUENCE_FLOATS.index(name)].reshape(-1)


class TorchNet:
    """A learning agent in this process: model, optimizer, recurrent state."""

    def __init__(
        self, device: str = "cpu", threads: int | None = None, max_params: int = MAX_PARAMS
    ) -> None:
        if max_params < 1:
            raise ValueError(f"max_params: expected >= 1, got {max_params}")
        self.max_params = max_params
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads: expected >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.threads = threads
        self._threads_set = threading.local()
        self.device = torch.device(resolve_device(device))
        self._lock = threading.Lock()
        self._cfg = net_pb2.NetCfg()
        self._optim_cfg = net_pb2.OptimCfg()
        self._model: Model | None = None
        self._optim: torch.optim.Optimizer | None = None
        self._flat: _FlatAdam | None = None
        self._hidden: Hidden | None = None
        self._hidden_batch: int | None = None
        self._widest = 0  # the widest layer of the model, for MAX_ROW_BYTES
        self._last_step: int | None = None
        self._last_loss: dict[str, float] | None = None

    # -- contract ------------------------------------------------------------------------------

    def init(self, cfg: net_pb2.NetCfg) -> net_pb2.InitReply:
        check_cfg(cfg, self.max_params)
        with self._lock:
            self._use_threads()
            self._cfg = net_pb2.NetCfg()
            self._cfg.CopyFrom(cfg)
            self._optim_cfg = net_pb2.OptimCfg()
            self._optim_cfg.CopyFrom(cfg.optim)
            self._model = self._build(cfg)
            self._widest = _widest(self._model)
            self._optim = make_optimizer(self._model, self._optim_cfg)
            self._hidden, self._hidden_batch = None, None
            self._last_step, self._last_loss = None, None
            size = sum(p.numel() for p in self._model.parameters())
        return net_pb2.InitReply(
            protocol_version=PROTOCOL_VERSION,
            implementation=_implementation(),
            device=self._device_name(),
            n_params=size,
            action_mask=True,
            model=net_pb2.MODEL_SLOTS
            if isinstance(self._model, SlotActorCritic)
            else net_pb2.MODEL_MLP,
        )

    def init_hidden(self, batch: int) -> None:
        with self._lock:
            model = self._ready()
            rows = _check_row_bytes("HiddenCfg.batch", check_hidden_batch(batch), self._widest)
            self._hidden_batch = rows
            if isinstance(model, ActorCritic) and model.recurrent:
                self._hidden = model.zero_hidden(self._hidden_batch, self.device)

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._use_threads()
            model = self._ready()
            check_predict_obs(obs, model.obs_dim, model.recurrent, self._hidden_batch)
            _check_row_bytes("obs", obs.shape[0], self._widest)
            with torch.inference_mode():
                logits, values, hidden = model.step(_tensor(obs, self.device), self._hidden)
            if model.recurrent:
                self._hidden = hidden
            return logits.cpu().numpy(), values.cpu().numpy()

    def reset_optimizer(self, optim: net_pb2.OptimCfg) -> None:
        check_optim_cfg(optim)
        with self._lock:
            model = self._ready()
            self._optim_cfg = net_pb2.OptimCfg()
            self._optim_cfg.CopyFrom(optim)
            self._optim = make_optimizer(model, self._optim_cfg)

    def train(self, step: int, batch: Sequences) -> dict[str, float]:
        with self._lock:
            self._use_threads()
            self._ready()
            step = int(step)
            if is_repeat(step, self._last_step, self._last_loss is not None):
                assert self._last_loss is not None
                return dict(self._last_loss)
            data, weights = self._check_sequences(batch)
            saved = self._snapshot()
            try:
                loss = self._update(data, weights, step)
                self._check_finite_result(loss)
            except _NonFinite as exc:
                self._restore(saved)
                raise invalid(
                    f"Train step {step}: the update gave a non-finite {exc} "
                    f"({_largest_input(batch)}); it was not applied, the parameters and the "
                    "optimizer state are as before this call"
                ) from None
            self._last_step, self._last_loss = step, loss
            return dict(loss)

    def get_params(self) -> Params:
        with self._lock:
            model, optim = self._ready(), self._optimizer()
            tensors = {k: _numpy(v) for k, v in model.state_dict().items()}
            names = [name for name, _ in model.named_parameters()]
            flat = {}
            for index, slots in optim.state_dict()["state"].items():
                for slot, value in slots.items():
                    flat[f"state.{names[index]}.{slot}"] = _numpy(torch.as_tensor(value))
            return Params(tensors, flat, self._last_step or 0)

    def set_params(self, params: Params) -> None:
        with self._lock:
            model = self._ready()
            version = check_version(params.version)
            expected = {k: (tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
            tensors = _copies(check_state("tensors", params.tensors, expected))
            optim_state = self._check_optimizer_state(model, params.optimizer)
            optim = make_optimizer(model, self._optim_cfg)
            if optim_state:
                full = optim.state_dict()
                full["state"] = optim_state
                optim.load_state_dict(full)
            model.load_state_dict(tensors, strict=True)
            self._optim = optim
            self._last_step = version if version > 0 else None
            self._last_loss = None

    # -- helpers -------------------------------------------------------------------------------

    def _use_threads(self) -> None:
        """Applies ``threads`` in the calling thread, once per thread.

        Part of the setting is per thread: a gRPC server calls in from its worker threads, where
        MKL would otherwise use every core (and the QR of the orthogonal init gave other
        numbers than in the thread that made the TorchNet, about 5e-7 apart).
        """
        if self.threads is not None and not getattr(self._threads_set, "done", False):
            torch.set_num_threads(self.threads)
            self._threads_set.done = True

    def _ready(self) -> Model:
        if self._model is None:
            raise precondition("call Init first: this learner has no model yet")
        return self._model

    def _optimizer(self) -> torch.optim.Optimizer:
        assert self._optim is not None
        return self._optim

    def _device_name(self) -> str:
        if self.device.type == "cuda" and self.device.index is None:
            return f"cuda:{torch.cuda.current_device()}"
        return str(self.device)

    def _build(self, cfg: net_pb2.NetCfg) -> Model:
        """The model NetCfg.model asks for; the MLP for a kind this learner does not offer."""
        activation = ACTIVATION_NAMES[cfg.activation]
        model: Model
        with torch.random.fork_rng(devices=[]):
            if cfg.model == net_pb2.MODEL_SLOTS:
                g = cfg.game
                model = SlotActorCritic(
                    g.attrs, g.values, g.agents, list(cfg.hidden_sizes), activation
                )
            else:
                model = ActorCritic(
                    cfg.obs_dim,
                    list(cfg.head_sizes),
                    list(cfg.hidden_sizes),
                    cfg.recurrent,
                    activation,
                )
        model.initialise(torch.Generator().manual_seed(cfg.seed))
        return model.to(self.device)

    def _check_sequences(self, batch: Sequences) -> tuple[_Batch, np.ndarray]:
        model = self._ready()
        checked = check_sequences(batch, model.obs_dim, model.head_sizes)
        floats = {name: getattr(checked, name) for name in SEQUENCE_FLOATS}
        return self._to_device(
            checked.obs, checked.actions, floats, checked.action_mask, model.recurrent
        )

    def _to_device(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        floats: dict[str, np.ndarray],
        allowed: np.ndarray | None,
        recurrent: bool,
    ) -> tuple[_Batch, np.ndarray]:
        """The batch on the device and the acted steps per unit (to skip empty minibatches)."""
        mask = floats["mask"]
        if recurrent:
            weights = mask.sum(axis=1)
        else:
            rows = mask.reshape(-1) > 0
            obs = obs.reshape(-1, obs.shape[-1])[rows]
            actions = actions.reshape(-1, actions.shape[-1])[rows]
            floats = {k: v.reshape(-1)[rows] for k, v in floats.items()}
            weights = floats["mask"]
            if allowed is not None:
                allowed = allowed.reshape(-1, allowed.shape[-1])[rows]
        dev = self.device
        batch = _Batch(
            obs=_tensor(obs, dev),
            actions=_tensor(actions, dev),
            floats=_tensor(np.stack([floats[k] for k in SEQUENCE_FLOATS]), dev),
            allowed=None if allowed is None else _tensor(allowed > 0, dev),
        )
        return batch, weights

    def _update(self, data: _Batch, weights: np.ndarray, step: int) -> dict[str, float]:
        cfg = self._cfg
        ppo = cfg.loss == net_pb2.LOSS_PPO
        passes, splits = (cfg.epochs, cfg.minibatches) if ppo else (1, 1)
        units = len(weights)
        rng = np.random.default_rng([cfg.seed, 0x5EED, step % (1 << 64)])
        stats: list[torch.Tensor] = []
        grad_norm = 0.0
        for _ in range(passes):
            order = rng.permutation(units) if ppo else np.arange(units)
            for idx in np.array_split(order, max(1, min(splits, units))):
                if weights[idx].sum() == 0:
                    continue
                rows = data.rows(torch.from_numpy(idx)) if ppo else data  # (all units in order)
                loss, parts = self._loss(rows)
                grad_norm = self._apply(loss)
                stats.append(torch.stack([parts[k] for k in LOSS_FIELDS[:-1]]))
        totals = {k: 0.0 for k in LOSS_FIELDS[:-1]}
        for row in torch.stack(stats).tolist() if stats else []:
            for k, v in zip(totals, row, strict=True):
                totals[k] += v
        result = {k: v / max(len(stats), 1) for k, v in totals.items()}
        result["grad_norm"] = grad_norm
        return result

    def _loss(self, data: _Batch) -> tuple[torch.Tensor, losses.Stats]:
        model, cfg = self._ready(), self._cfg
        if model.recurrent:
            logits, values = model.unroll(data.obs)
            logits, values = logits.reshape(-1, logits.shape[-1]), values.reshape(-1)
            actions = data.actions.reshape(-1, data.actions.shape[-1])
        else:
            logits, values, _ = model.step(data.obs)
            actions = data.actions

        if data.allowed is not None:  # the masked policy: no probability on masked actions
            allowed = data.allowed.reshape(logits.shape)
            logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
        logp = joint_log_prob(logits, actions, model.head_sizes)
        entropy = joint_entropy(logits, model.head_sizes)
        pick = data.field
        logp_old, mask, returns = pick("logp_old"), pick("mask"), pick("returns")
        ent, val = cfg.entropy_coef, cfg.value_coef
        if cfg.loss == net_pb2.LOSS_REINFORCE:
            return losses.reinforce_loss(logp, logp_old, returns, entropy, mask, entropy_coef=ent)
        if cfg.loss == net_pb2.LOSS_REINFORCE_BASELINE:
            return losses.reinforce_baseline_loss(
                logp, logp_old, values, returns, entropy, mask, value_coef=val, entropy_coef=ent
            )
        advantages = pick("advantages")
        if cfg.loss == net_pb2.LOSS_A2C:
            return losses.a2c_loss(
                logp, logp_old, advantages, values, returns, entropy, mask,
                value_coef=val, entropy_coef=ent,
            )  # fmt: skip
        values_old = pick("values_old")
        return losses.ppo_loss(
            logp, logp_old, advantages, values, values_old, returns, entropy, mask,
            clip=cfg.clip, value_coef=val, entropy_coef=ent, clip_value=cfg.clip_value,
        )  # fmt: skip

    def _apply(self, loss: torch.Tensor) -> float:
        model, optim = self._ready(), self._optimizer()
        optim.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss)):
            raise _NonFinite(f"loss ({float(loss.detach())})")
        loss.backward()
        for p in model.parameters():
            if p.grad is None:  # e.g. the value head under reinforce: keep a full optimizer state
                p.grad = torch.zeros_like(p)
        norm = losses.clip_grad_norm(model.parameters(), self._cfg.max_grad_norm)
        if not math.isfinite(norm):
            raise _NonFinite(f"gradient (norm {norm})")
        if self._flat is None or self._flat.optim is not optim:
            self._flat = _FlatAdam(model, optim)
        if not self._flat.step():
            optim.step()
        return norm

    def _snapshot(self) -> tuple[dict[str, torch.Tensor], dict]:  # type: ignore[type-arg]
        model, optim = self._ready(), self._optimizer()
        tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
        full = optim.state_dict()
        state = {i: {k: _clone(v) for k, v in slots.items()} for i, slots in full["state"].items()}
        return tensors, {"state": state, "param_groups": copy.deepcopy(full["param_groups"])}

    def _restore(self, saved: tuple[dict[str, torch.Tensor], dict]) -> None:  # type: ignore[type-arg]
        model = self._ready()
        model.load_state_dict(saved[0], strict=True)
        optim = make_optimizer(model, self._optim_cfg)
        optim.load_state_dict(saved[1])
        self._optim = optim

    def _check_finite_result(self, loss: dict[str, float]) -> None:
        """Raises _NonFinite naming the first non-finite loss, parameter or optimizer slot."""
        for k, v in loss.items():
            if not math.isfinite(v):
                raise _NonFinite(f"{k} ({v})")
        model, optim = self._ready(), self._optimizer()
        named = [(f"parameter {name}", p.detach()) for name, p in model.named_parameters()]
        for slots in optim.state.values():
            named += [(f"optimizer slot {k}", v) for k, v in slots.items() if torch.is_tensor(v)]
        norms = torch._foreach_norm([t.float() for _, t in named])
        if bool(torch.stack(norms).isfinite().all()):  # a NaN or inf anywhere makes its norm so
            return
        for what, t in named:  # a norm may also overflow: look at the values
            if not bool(torch.isfinite(t).all()):
                raise _NonFinite(what)

    def _check_optimizer_state(
        self, model: Model, state: Mapping[str, np.ndarray]
    ) -> dict[int, dict[str, torch.Tensor]]:
        if not isinstance(state, Mapping):
            raise invalid(f"optimizer: expected a map of name -> array, got {type(state).__name__}")
        if not state:
            return {}
        kind = OPTIM_NAMES[self._optim_cfg.kind]
        expected: dict[str, tuple[tuple[int, ...], type]] = {}
        params = list(model.named_parameters())
        for name, param in params:
            for slot in optimizer_slots(self._optim_cfg):
                shape = () if slot == "step" else tuple(param.shape)
                expected[f"state.{name}.{slot}"] = (shape, np.float32)
        checked = _copies(check_state(f"optimizer ({kind})", state, expected))
        out: dict[int, dict[str, torch.Tensor]] = {}
        for index, (name, _) in enumerate(params):
            slots = optimizer_slots(self._optim_cfg)
            out[index] = {slot: checked[f"state.{name}.{slot}"] for slot in slots}
        return out


def _widest(model: Model) -> int:
    """The widest layer of ``model``, its input included."""
    linears = (m for m in model.modules() if isinstance(m, torch.nn.Linear))
    return max(model.obs_dim, getattr(model, "row_width", 0), *(m.out_features for m in linears))


def _check_row_bytes(field: str, rows: int, widest: int) -> int:
    """``rows`` if their activations fit MAX_ROW_BYTES for a model ``widest`` wide, else
    INVALID_ARGUMENT."""
    need = rows * widest * 8
    if need > MAX_ROW_BYTES:
        raise invalid(
            f"{field}: {rows} rows of a model {widest} wide need {need} bytes, more than the "
            f"limit {MAX_ROW_BYTES} (at most {MAX_ROW_BYTES // (widest * 8)} rows for this model)"
        )
    return rows


class _NonFinite(Exception):
    """A Train update that gave a non-finite number; the message names what."""


def _clone(value: object) -> object:
    return value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _largest_input(batch: Sequences) -> str:
    """Which input of a batch holds the value of largest magnitude, and that value."""
    names = ("obs", *SEQUENCE_FLOATS)
    largest = {n: float(np.abs(getattr(batch, n)).max(initial=0.0)) for n in names}
    name = max(largest, key=lambda n: largest[n])
    return f"the largest input is |{name}| = {largest[name]:.3g}"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), order="C", copy=True)


def _copies(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """CPU tensors holding copies of checked arrays."""
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in arrays.items()}
