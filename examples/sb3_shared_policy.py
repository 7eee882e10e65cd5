"""Train CASI with Stable-Baselines3 PPO through the PettingZoo view: two learning agents.

The game is exp2's world with a second learner: ``agents = [learner, learner, honest]``. The
PettingZoo view keeps a finished agent until the episode ends (``keep_finished=True``), so
SuperSuit turns it into a vector env with one slot per learner (``pettingzoo_env_to_vec_env_v1``)
and stacks ``--copies`` games (``concat_vec_envs_v1``). SB3 sees 2 x copies slots of one
environment: the two learners act with ONE shared policy (parameter sharing), each from its
own observation. docs/interop.md explains the choices and gives the numbers this reaches.

    .venv/bin/python examples/sb3_shared_policy.py                       # 1M agent-steps, ~25 min
    .venv/bin/python examples/sb3_shared_policy.py --timesteps 100000 --json out.json

Every ``--eval-every`` agent-steps one line: the greedy policy's win rate and mean return per
learner over ``--eval-episodes`` fresh episodes, and the questions asked per episode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import supersuit as ss
import torch
from casi_sim.pettingzoo import parallel_env
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize
from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

GAME: dict[str, Any] = {
    "agents": ["learner", "learner", "honest"],
    "max_steps": 10,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4},
}
EVAL_SEED = 10_000
GAMMA = 0.95


def vector_env(copies: int, seed: int) -> Any:
    """``copies`` games as one gymnasium vector env, slot ``2k + j`` is learner j of game k."""
    env = parallel_env(**GAME, keep_finished=True)
    venv = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), copies)
    # copy k plays the episodes of seed + k; without this reset every copy would play one stream
    venv.reset(seed=seed)
    return venv


def sb3_env(copies: int, seed: int) -> VecNormalize:
    """The training env: SuperSuit's SB3 adapter, returns scaled by their running deviation
    (the win is worth 300 points, a question 2)."""
    venv = SB3VecEnvWrapper(vector_env(copies, seed))
    return VecNormalize(venv, norm_obs=False, gamma=GAMMA)


def evaluate(model: PPO, episodes: int, copies: int = 16) -> dict[str, float]:
    """The greedy policy on ``episodes`` fresh episodes (the first ``episodes / copies`` of
    every copy): win rate and mean return of each learner, questions per episode."""
    venv = vector_env(copies, EVAL_SEED)
    per_copy = -(-episodes // copies)
    n = venv.num_envs
    wins, returns, asked = np.zeros(n), np.zeros(n), np.zeros(n)
    finished = np.zeros(copies, int)
    obs = venv.reset(seed=EVAL_SEED)[0]
    while finished.min() < per_copy:
        actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, terms, truncs, infos = venv.step(actions)
        counting = np.repeat(finished < per_copy, 2)
        returns += rewards * counting
        wins += np.array([bool(info.get("won", False)) for info in infos]) * counting
        asked += np.array([int(info.get("asked", 0)) for info in infos]) * counting
        finished += (terms | truncs).reshape(copies, 2).all(axis=1)
    total = copies * per_copy
    result = {"questions": float(asked.sum() / total)}
    for j in range(2):
        result[f"a{j}_win"] = float(wins[j::2].sum() / total)
        result[f"a{j}_return"] = float(returns[j::2].sum() / total)
    return result


def line(steps: int, elapsed: float, result: dict[str, float]) -> str:
    learners = "  ".join(
        f"a{j} win {result[f'a{j}_win']:.2f} return {result[f'a{j}_return']:+.1f}" for j in range(2)
    )
    return (
        f"agent-steps {steps:>8}  {learners}  questions {result['questions']:.2f}  "
        f"elapsed {elapsed:.0f} s"
    )


def arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timesteps", type=int, default=1_000_000, help="agent-steps to train")
    p.add_argument("--copies", type=int, default=32, help="games played side by side")
    p.add_argument("--n-steps", type=int, default=64, help="steps per slot per PPO update")
    p.add_argument("--eval-every", type=int, default=20_480, help="agent-steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=512)
    p.add_argument("--ent-coef", type=float, default=0.05, help="PPO's entropy coefficient")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the evaluations to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    set_random_seed(args.seed)
    venv = sb3_env(args.copies, args.seed)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=min(1024, args.n_steps * venv.num_envs),
        n_epochs=10,
        learning_rate=args.lr,
        gamma=GAMMA,
        ent_coef=args.ent_coef,
        policy_kwargs={"net_arch": [128, 128]},
        device="cpu",
    )
    first = [p.detach().clone() for p in model.policy.parameters()]
    start = time.monotonic()
    history = [{"agent_steps": 0, **evaluate(model, args.eval_episodes)}]
    print(line(0, 0.0, history[-1]), flush=True)
    while model.num_timesteps < args.timesteps:
        chunk = min(args.eval_every, args.timesteps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False)
        history.append({"agent_steps": model.num_timesteps, **evaluate(model, args.eval_episodes)})
        print(line(model.num_timesteps, time.monotonic() - start, history[-1]), flush=True)
    moved = sum(
        float((p - q).norm()) for p, q in zip(model.policy.parameters(), first, strict=True)
    )
    if args.json:
        with open(args.json, "w") as f:
            out = {"game": GAME, "args": vars(args), "parameters_moved": moved}
            json.dump({**out, "evaluations": history}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
