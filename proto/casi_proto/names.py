"""The names of the contract's enums: config words <-> ``casi.v1`` values, and the intentions.

``LOSSES``, ``OPTIMIZERS``, ``ACTIVATIONS`` and ``MODELS`` map the words a config uses (``"ppo"``,
``"adam"``, ``"tanh"``, ``"slots"``) to enum values; ``OPTIM_NAMES`` and ``ACTIVATION_NAMES`` map back.
``INTENTION_NAMES[code]`` names the intention ``code`` (``casi.v1.Intention``), which is also
the entry's index in every intention head.
"""

from __future__ import annotations

from casi.v1 import net_pb2

LOSSES: dict[str, net_pb2.LossKind] = {
    "ppo": net_pb2.LOSS_PPO,
    "a2c": net_pb2.LOSS_A2C,
    "reinforce": net_pb2.LOSS_REINFORCE,
    "reinforce_baseline": net_pb2.LOSS_REINFORCE_BASELINE,
}
OPTIMIZERS: dict[str, net_pb2.OptimKind] = {
    "adam": net_pb2.OPTIM_ADAM,
    "rmsprop": net_pb2.OPTIM_RMSPROP,
    "sgd": net_pb2.OPTIM_SGD,
}
ACTIVATIONS: dict[str, net_pb2.Activation] = {
    "tanh": net_pb2.ACTIVATION_TANH,
    "relu": net_pb2.ACTIVATION_RELU,
}
MODELS: dict[str, net_pb2.ModelKind] = {
    "mlp": net_pb2.MODEL_MLP,
    "slots": net_pb2.MODEL_SLOTS,
}

OPTIM_NAMES: dict[int, str] = {kind: word for word, kind in OPTIMIZERS.items()}
# ACTIVATION_UNSPECIFIED is treated as tanh (net.proto).
ACTIVATION_NAMES: dict[int, str] = {
    net_pb2.ACTIVATION_UNSPECIFIED: "tanh",
    **{value: word for word, value in ACTIVATIONS.items()},
}

INTENTION_NAMES: tuple[str, ...] = tuple(
    name.removeprefix("INTENTION_").lower()
    for name, _ in sorted(net_pb2.Intention.items(), key=lambda item: item[1])
)
N_INTENTIONS = len(INTENTION_NAMES)
