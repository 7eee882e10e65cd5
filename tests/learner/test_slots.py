"""The slot model (NetCfg.model MODEL_SLOTS, casi_learner.slots): it reads the simulator's own
observation layout, puts each attribute's logits at the game's action indices, shares its
weights across attributes and values, and is what Init builds and says it built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from casi.v1 import net_pb2
from casi_learner.slots import SlotActorCritic
from casi_learner.torch_net import TorchNet
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from casi_proto.sizes import game_head_sizes, n_params
from casi_sim import BatchSim, GameConfig

C, D, G, M = 6, 3, 2, 5  # attributes, known directly, goals, values
AGENTS = ["learner", "honest", "liar"]
NA = len(AGENTS)


def game() -> GameConfig:
    attrs = {"count": C, "direct": D, "goal": G, "values": M}
    return GameConfig(agents=AGENTS, max_steps=8, attrs=attrs)


def blank_model() -> SlotActorCritic:
    """A slot model whose every parameter is 0 (tests set the few they need)."""
    model = SlotActorCritic(C, M, NA, [16], "tanh")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def asked_everyone_about_everything() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Agent 0's observation after it asked agent 1 (honest) about each attribute in turn,
    and the simulator's state."""
    sim = BatchSim(game(), batch=1, seed=4)
    obs = sim.reset()
    for a in range(C):
        main = np.zeros((1, NA), dtype=np.int64)
        main[0, 0] = 1 + C * M + 1 * C + a  # ask agent 1 about a
        obs, *_ = sim.step(main, np.zeros((1, NA, NA), dtype=np.int64))
    return obs[:, 0], sim.state()


def test_a_guess_follows_the_honest_answer_at_the_games_own_index() -> None:
    # only the coefficient of agent 1's answer: every guess logit is 10 x "agent 1 said v"
    model = blank_model()
    with torch.no_grad():
        model.guess.bias[2 + 1] = 10.0
    obs, state = asked_everyone_about_everything()
    logits, _, _ = model.step(torch.from_numpy(obs))
    guesses = logits[0, 1 : 1 + C * M].reshape(C, M)
    answered = {a for a in range(C) if guesses[a].max() > 0}
    knows = set(np.flatnonzero(state["direct"][0, 1]))  # it says "unknown" of the others
    assert answered == knows - {C - 1}  # the answer about the last is still on its way
    for a in answered:
        assert int(guesses[a].argmax()) == state["values"][0, a]  # honest: the true value


def test_asks_follow_the_goal_flag_at_the_games_own_index() -> None:
    # unit 0 of the shared layer is tanh(3 x goal); asking agent 2 about a is 10 x that unit
    model = blank_model()
    goal_input = 1  # own flags: direct, goal, solved, guesses used
    with torch.no_grad():
        model.slot[0].weight[0, goal_input] = 3.0
        model.ask.weight[2, 0] = 10.0
    obs, state = asked_everyone_about_everything()
    logits, _, _ = model.step(torch.from_numpy(obs))
    ask = logits[0, 1 + C * M : 1 + C * M + NA * C].reshape(NA, C)
    goals = set(np.flatnonzero(state["goal"][0, 0]))
    assert {a for a in range(C) if ask[2, a] > 1} == goals
    assert torch.all(ask[:2] == 0)  # asking agents 0 and 1 is left at 0


def test_two_attributes_that_look_alike_get_the_same_logits() -> None:
    # one network for every attribute and value: attribute 1 seen as attribute 4 is, with
    # the answer's value moved from 2 to 3, gives the same ask logits and moved guess logits
    model = SlotActorCritic(C, M, NA, [16], "tanh")
    model.initialise(torch.Generator().manual_seed(0))
    obs, _ = asked_everyone_about_everything()
    x = torch.from_numpy(obs).clone()
    own, answers = slice(0, C * (4 + M)), slice(C * (4 + M), C * (4 + M) * (1 + NA))
    mine = x[0, own].reshape(C, 4 + M)
    heard = x[0, answers].reshape(NA, C, 4 + M)
    for a, v in ((1, 2), (4, 3)):
        mine[a] = torch.tensor([0, 1, 0, 0] + [0] * M)  # a goal, not known
        heard[:, a] = 0
        heard[1, a, 3] = 1  # agent 1 answered with a value...
        heard[1, a, 4 + v] = 1  # ... v
    x[0, own], x[0, answers] = mine.flatten(), heard.flatten()
    logits, _, _ = model.step(x)
    guesses = logits[0, 1 : 1 + C * M].reshape(C, M)
    ask = logits[0, 1 + C * M : 1 + C * M + NA * C].reshape(NA, C)
    assert torch.allclose(ask[:, 1], ask[:, 4])
    assert torch.allclose(guesses[1, 2], guesses[4, 3])
    others = [v for v in range(M) if v not in (2, 3)]
    assert torch.allclose(guesses[1, others], guesses[4, others])


def slots_cfg(**fields: object) -> net_pb2.NetCfg:
    cfg = NetContract().make_cfg(
        obs_dim=game().obs_dim, head_sizes=game_head_sizes(C, M, NA), hidden_sizes=[16]
    )
    cfg.model = net_pb2.MODEL_SLOTS
    cfg.game.attrs, cfg.game.values, cfg.game.agents = C, M, NA
    for name, value in fields.items():
        setattr(cfg, name, value)
    return cfg


def test_init_builds_the_slot_model_says_so_and_counts_it() -> None:
    net = TorchNet()
    reply = net.init(slots_cfg())
    model = SlotActorCritic(C, M, NA, [16], "tanh")
    count = sum(p.numel() for p in model.parameters())
    assert reply.model == net_pb2.MODEL_SLOTS and reply.n_params == count
    assert n_params(game().obs_dim, game_head_sizes(C, M, NA), [16], False, NA) == count
    logits, values = net.predict(np.zeros((3, game().obs_dim), dtype=np.float32))
    assert logits.shape == (3, sum(game_head_sizes(C, M, NA))) and values.shape == (3,)
    assert TorchNet().init(slots_cfg(model=net_pb2.MODEL_MLP)).model == net_pb2.MODEL_MLP


def test_a_model_kind_this_learner_does_not_know_builds_the_mlp_and_says_so() -> None:
    reply = TorchNet().init(slots_cfg(model=7))
    assert reply.model == net_pb2.MODEL_MLP


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"obs_dim": 99}, "NetCfg.obs_dim: MODEL_SLOTS with NetCfg.game 6/5/3"),
        ({"recurrent": True}, "NetCfg.recurrent: MODEL_SLOTS is feed-forward"),
        ({"game.values": 1}, "NetCfg.game: MODEL_SLOTS expected attrs >= 1, values >= 2"),
        ({"game.agents": 2}, "NetCfg.obs_dim: MODEL_SLOTS with NetCfg.game 6/5/2"),
    ],
)
def test_a_slot_model_the_game_does_not_fit_is_refused_naming_the_field(
    change: dict[str, object], words: str
) -> None:
    cfg = slots_cfg()
    for name, value in change.items():
        target, _, field = name.rpartition(".")
        setattr(getattr(cfg, target) if target else cfg, field, value)
    with pytest.raises(NetError, match=words) as refused:
        TorchNet().init(cfg)
    assert refused.value.code == "INVALID_ARGUMENT"


def test_heads_other_than_the_games_are_refused() -> None:
    cfg = slots_cfg()
    del cfg.head_sizes[:]
    cfg.head_sizes.extend([3, 4, 5, 5, 5])
    with pytest.raises(NetError, match=r"NetCfg.head_sizes: MODEL_SLOTS .* expected the game's"):
        TorchNet().init(cfg)
