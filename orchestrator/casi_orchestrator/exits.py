"""Exit statuses of the ``casi`` command."""

import signal

EXIT_OK = 0
EXIT_ERROR = 1  # a learner or checkpoint problem
EXIT_USAGE = 2  # a bad config or command line
# stopped by a signal: 128 + its number (130 SIGINT, 143 SIGTERM), after checkpointing
EXIT_SIGNAL_BASE = 128

MEANINGS = {
    EXIT_OK: "done",
    EXIT_ERROR: "a learner or checkpoint problem",
    EXIT_USAGE: "a bad config or command line (every mistake is printed)",
    EXIT_SIGNAL_BASE + signal.SIGINT: "stopped by SIGINT (Ctrl-C), after checkpointing",
    EXIT_SIGNAL_BASE + signal.SIGTERM: "stopped by SIGTERM, after checkpointing",
}


def exit_codes_text() -> str:
    """The exit statuses, one a line, for ``--help``."""
    lines = [f"  {code:<4} {meaning}" for code, meaning in MEANINGS.items()]
    return "exit status:\n" + "\n".join(lines)
