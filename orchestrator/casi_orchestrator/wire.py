"""The wire messages a trial sends its learners, made from the run's config."""

from __future__ import annotations

from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION
from casi_proto.names import ACTIVATIONS, LOSSES, MODELS, N_INTENTIONS, OPTIMIZERS
from casi_sim import GameConfig

from casi_orchestrator.config import AlgorithmCfg
from casi_orchestrator.factored import FactoredHeads


def head_sizes(game: GameConfig, factored: bool = False) -> list[int]:
    """The main head ``A``, then one intention head per agent slot (SPEC 4); ``factored``
    (``[algorithm] factored_main``): the kind, attribute, agent and value heads instead of
    the main head (:class:`FactoredHeads`)."""
    if factored:
        return FactoredHeads.of(game)
    return [game.n_main_actions] + [N_INTENTIONS] * game.n_agents


def optim_cfg(alg: AlgorithmCfg) -> net_pb2.OptimCfg:
    """The optimizer of ``[algorithm]``, for Init and ResetOptimizer."""
    return net_pb2.OptimCfg(
        kind=OPTIMIZERS[alg.optimizer], lr=alg.lr, momentum=alg.momentum, eps=alg.eps
    )


def net_cfg(alg: AlgorithmCfg, game: GameConfig, seed: int) -> net_pb2.NetCfg:
    """The NetCfg of one learning agent whose model is initialised from ``seed``."""
    return net_pb2.NetCfg(
        protocol_version=PROTOCOL_VERSION,
        obs_dim=game.obs_dim,
        head_sizes=head_sizes(game, alg.factored_main),
        hidden_sizes=alg.hidden_sizes,
        recurrent=alg.recurrent,
        seed=seed,
        loss=LOSSES[alg.loss],
        optim=optim_cfg(alg),
        clip=alg.clip,
        value_coef=alg.value_coef,
        entropy_coef=alg.entropy_coef,
        epochs=alg.epochs,
        minibatches=alg.minibatches,
        max_grad_norm=alg.max_grad_norm,
        clip_value=alg.clip_value,
        activation=ACTIVATIONS[alg.activation],
        model=MODELS[alg.model],
        game=net_pb2.GameShape(
            attrs=game.attrs.count, values=game.attrs.values, agents=game.n_agents
        )
        if alg.model == "slots"
        else None,
    )
