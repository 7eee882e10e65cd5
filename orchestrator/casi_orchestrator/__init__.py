"""CASI's orchestrator: runs experiments (rollouts, bonus, GAE, Train, evaluation,
backtracking) against learners reached through the Net contract. No torch here."""

__version__ = "0.1.0"
