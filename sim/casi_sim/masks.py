"""Which actions are pointless: sure to cost points and to teach the agent nothing.

An opt-in aid for learners (the orchestrator's ``[algorithm] mask_pointless``), never a rule
of the game: the simulator accepts every action. Everything used here is in the acting
agent's own observation (its direct, goal and solved cells, its guess counts, who asked it),
so a mask reveals nothing hidden.

Pointless for agent ``i``:

- asking itself (``cost_ask_self_question``), or asking anyone about an attribute it knows;
- guessing an attribute that is not an unsolved goal of its own (``cost_known_guess``,
  ``cost_non_goal_guess``, ``cost_solved_guess``), or one it has no guesses left for
  (``cost_excessive_guessing``);
- any intention but ``ignore`` towards an agent that did not ask it anything in the previous
  step (``cost_unnecessary_reply``), and towards its own slot (which the game ignores).

``noop`` and ``ignore`` are always allowed, so every head allows some action.
"""

from __future__ import annotations

import numpy as np

from casi_sim.actions import IGNORE, N_INTENTIONS
from casi_sim.kernel import Channels, Progress, Worlds


def allowed_actions(
    worlds: Worlds, progress: Progress, channels: Channels, values: int, max_guesses: int
) -> tuple[np.ndarray, np.ndarray]:
    """(main bool [B, na, A], intentions bool [B, na, na, N_INTENTIONS]): True where allowed."""
    b, na, c = worlds.goal.shape
    known = worlds.direct | progress.solved
    guessable = worlds.goal & ~progress.solved & (progress.guesses < max_guesses)
    ask = np.repeat(~known[:, :, None, :], na, axis=2)  # [B, i, j, a]
    ask[:, np.arange(na), np.arange(na), :] = False
    main = np.concatenate(
        [
            np.ones((b, na, 1), bool),
            np.repeat(guessable, values, axis=2),
            ask.reshape(b, na, na * c),
        ],
        axis=2,
    )
    asked_me = channels.ask_to[:, None, :] == np.arange(na)[None, :, None]  # [B, i, j]
    asked_me[:, np.arange(na), np.arange(na)] = False
    intentions = np.repeat(asked_me[..., None], N_INTENTIONS, axis=3)
    intentions[..., IGNORE] = True
    return main, intentions
