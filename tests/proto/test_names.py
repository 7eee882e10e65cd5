"""casi_proto.names covers the contract's enums, and casi_sim's intentions equal the proto's."""

from __future__ import annotations

import casi_sim.actions
from casi.v1 import net_pb2
from casi_proto.names import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    INTENTION_NAMES,
    LOSSES,
    N_INTENTIONS,
    OPTIM_NAMES,
    OPTIMIZERS,
)


def test_every_enum_value_but_unspecified_has_a_config_word() -> None:
    for words, enum in ((LOSSES, net_pb2.LossKind), (OPTIMIZERS, net_pb2.OptimKind)):
        assert sorted(words.values()) == sorted(v for v in enum.values() if v != 0)
    assert sorted(ACTIVATIONS.values()) == sorted(v for v in net_pb2.Activation.values() if v != 0)


def test_the_reverse_maps_undo_the_config_words() -> None:
    assert {OPTIM_NAMES[v]: v for v in OPTIMIZERS.values()} == OPTIMIZERS
    assert {ACTIVATION_NAMES[v]: v for v in ACTIVATIONS.values()} == ACTIVATIONS
    assert ACTIVATION_NAMES[net_pb2.ACTIVATION_UNSPECIFIED] == "tanh"


def test_intention_names_follow_the_proto_enum() -> None:
    assert N_INTENTIONS == len(net_pb2.Intention.values()) == 5
    for code, name in enumerate(INTENTION_NAMES):
        assert net_pb2.Intention.Value(f"INTENTION_{name.upper()}") == code


def test_the_simulator_uses_the_same_intention_names_and_codes() -> None:
    # casi_sim keeps its own copy (it must not depend on casi_proto): they must not drift
    assert casi_sim.actions.INTENTION_NAMES == INTENTION_NAMES
    for code, name in enumerate(INTENTION_NAMES):
        assert getattr(casi_sim.actions, name.upper()) == code, name
