"""The game's randomness: a stateless counter-based hash (splitmix64).

Every random number of the game is ``draw(key, purpose, x, y, z)`` for an episode key and a
few counters, so the numba kernel and the pure-Python reference produce the same numbers bit
for bit, and an episode is a pure function of its seed:

- ``episode_key(seed, epoch, b)``: seed of the stream, reset number since seeding, episode slot;
- a uniform integer in ``[0, n)`` is ``draw(...) % n`` (the bias, below 2**-50 for the small
  ranges of the game, is accepted for the sake of a rule that anyone can re-implement);
- a lie uses ``lie_hash(salt, questioner, attr)``, with the answerer's private salt.
"""

from __future__ import annotations

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB

# Purposes: which random quantity a draw is for.
VALUE = 1  # the true value of an attribute: (VALUE, a)
DIRECT = 2  # a direct set, Fisher-Yates step k: (DIRECT, attempt, i, k)
GOAL = 3  # a goal set, Fisher-Yates step k: (GOAL, i, k)
SALT = 4  # an agent's private salt: (SALT, i)
RANDOM_MAIN = 5  # the scripted random agent's main action: (RANDOM_MAIN, t, i)
RANDOM_INTENTION = 6  # its intention towards slot q: (RANDOM_INTENTION, t, i, q)

# Direct sets are redrawn until every agent can draw its goals; a config for which that is
# possible, but this unlikely, is refused when a world is drawn.
MAX_ATTEMPTS = 1_000_000


def mix(x: int) -> int:
    """The splitmix64 output function of ``x + GOLDEN``: a bijection of 64-bit words."""
    z = (x + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * MUL1) & MASK
    z = ((z ^ (z >> 27)) * MUL2) & MASK
    return z ^ (z >> 31)


def seed_word(seed: int) -> int:
    """Any Python int as a 64-bit seed (taken modulo 2**64)."""
    return int(seed) & MASK


def episode_key(seed: int, epoch: int, b: int) -> int:
    """The key of episode slot ``b`` after ``epoch`` resets since the stream was seeded."""
    return mix(mix(mix(seed_word(seed)) ^ int(epoch)) ^ int(b))


def draw(key: int, purpose: int, x: int = 0, y: int = 0, z: int = 0) -> int:
    """A 64-bit random word for ``purpose`` and the counters ``x, y, z``."""
    return mix(mix(mix(mix(int(key) ^ purpose) ^ int(x)) ^ int(y)) ^ int(z))


def lie_hash(salt: int, questioner: int, attr: int) -> int:
    """The word behind agent's lie to ``questioner`` about ``attr``."""
    return mix(mix(mix(int(salt)) ^ int(questioner)) ^ int(attr))


def lie(salt: int, questioner: int, attr: int, m: int, known_value: int | None) -> int:
    """The specific lie (SPEC 2.3): never the truth when the value is known."""
    h = lie_hash(salt, questioner, attr)
    if known_value is None:
        return h % m
    return (int(known_value) + 1 + h % (m - 1)) % m
