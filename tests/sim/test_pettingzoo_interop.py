"""The PettingZoo view under other libraries' wrappers: SuperSuit's vector envs, TorchRL."""

from __future__ import annotations

import numpy as np
import supersuit as ss
import torch
from casi_sim.actions import COMPLETE_TRUTH, guess_action
from casi_sim.pettingzoo import parallel_env
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.envs.utils import MarlGroupMapType

# small and short, so that random play often wins before the time limit
QUICK = {
    "agents": ["learner", "honest", "learner"],
    "max_steps": 8,
    "attrs": {"count": 2, "direct": 1, "goal": 1, "values": 2},
}
GAME = {
    "agents": ["learner", "honest", "learner"],
    "max_steps": 6,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 3},
}


def test_supersuit_vector_env_over_episodes_with_early_winners():
    env = parallel_env(**QUICK, keep_finished=True)
    venv = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), 2, base_class="gymnasium")
    assert venv.num_envs == 4
    obs, _ = venv.reset(seed=0)
    venv.action_space.seed(0)
    early, ends = 0, 0
    before = np.zeros(4, bool)
    for _ in range(300):
        actions = np.stack([venv.action_space.sample() for _ in range(venv.num_envs)])
        obs, rewards, terms, truncs, _ = venv.step(actions)
        done = (terms | truncs).astype(bool)
        assert np.all(rewards[before & done] == 0.0), "a finished agent earns 0"
        for copy in (slice(0, 2), slice(2, 4)):
            if done[copy].all():
                ends += 1
                assert np.all(obs[copy, -2] == 0.0), "a finished episode starts again at t = 0"
                done[copy] = False
            elif done[copy].any():
                early += 1
        before = done
    assert early > 20 and ends > 30, (early, ends)


def test_supersuit_finished_agent_gets_zero_until_its_partner_ends():
    env = parallel_env(**GAME, keep_finished=True)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv.reset(seed=2)
    st = env._sim.state()
    goal = int(np.flatnonzero(st["goal"][0, 0])[0])
    win = guess_action(env.cfg, goal, int(st["values"][0, goal]))
    _, rewards, terms, truncs, _ = venv.step(np.array([[win, 0, 0, 0], [0, COMPLETE_TRUTH, 0, 0]]))
    assert terms.tolist() == [1, 0] and rewards[0] > 0
    for t in range(2, 7):
        obs, rewards, terms, truncs, infos = venv.step(np.array([[win, 0, 0, 0], [0, 0, 0, 0]]))
        assert rewards[0] == 0.0 and terms.tolist() == [1, 0]
        assert truncs.tolist() == [0, int(t == 6)]
    assert "terminal_observation" in infos[1] and np.all(obs[:, -2] == 0.0)


def win_policy(pz, one_group=False):
    """A TorchRL policy: a0 plays its winning guess, a2 noops (groups by name, or one group)."""

    def act(td):
        st = pz._sim.state()
        goal = int(np.flatnonzero(st["goal"][0, 0])[0])
        win = torch.tensor([[guess_action(pz.cfg, goal, int(st["values"][0, goal])), 0, 0, 0]])
        noop = torch.zeros((1, 4), dtype=torch.int64)
        if one_group:
            td.set(("agents", "action"), torch.cat([win, noop]))
        else:
            td.set(("a0", "action"), win)
            td.set(("a2", "action"), noop)
        return td

    return act


def test_torchrl_done_on_any_false_waits_for_every_agent():
    pz = parallel_env(**GAME, keep_finished=True)
    env = PettingZooWrapper(pz, done_on_any=False, return_state=True, seed=2)
    td = env.rollout(12, policy=win_policy(pz), break_when_any_done=False)
    nxt = td["next"]
    assert nxt["done"].squeeze(-1).tolist() == [False] * 5 + [True] + [False] * 5 + [True]
    assert nxt["a0", "terminated"].reshape(-1).tolist() == [True] * 12
    assert nxt["a2", "truncated"].reshape(-1).tolist() == ([False] * 5 + [True]) * 2
    a0_rewards = nxt["a0", "reward"].reshape(-1).tolist()
    assert a0_rewards[0] > 0 and a0_rewards[6] > 0
    assert a0_rewards[1:6] == [0.0] * 5 and a0_rewards[7:] == [0.0] * 5
    assert nxt["state"].shape == (12, *pz.state_space.shape)


def test_torchrl_done_on_any_ends_at_the_first_win():
    pz = parallel_env(**GAME, keep_finished=True)
    env = PettingZooWrapper(pz, done_on_any=True, seed=2)
    td = env.rollout(3, policy=win_policy(pz), break_when_any_done=False)
    assert td["next", "done"].squeeze(-1).tolist() == [True, True, True]


def test_torchrl_one_group_for_a_shared_network():
    pz = parallel_env(**GAME, keep_finished=True)
    group = MarlGroupMapType.ALL_IN_ONE_GROUP
    env = PettingZooWrapper(pz, done_on_any=False, group_map=group, seed=2)
    td = env.rollout(6, policy=win_policy(pz, one_group=True), break_when_any_done=False)
    assert td["next", "done"].squeeze(-1).tolist() == [False] * 5 + [True]
    done = td["next", "agents", "done"].squeeze(-1)
    assert done[:, 0].tolist() == [True] * 6 and done[:, 1].tolist() == [False] * 5 + [True]
