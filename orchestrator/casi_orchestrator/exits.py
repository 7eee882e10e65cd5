"""Exit statuses of the ``casi`` command."""

EXIT_OK = 0
EXIT_ERROR = 1  # a learner or checkpoint problem
EXIT_USAGE = 2  # a bad config or command line
# stopped by a signal: 128 + its number (130 SIGINT, 143 SIGTERM), after checkpointing
EXIT_SIGNAL_BASE = 128
