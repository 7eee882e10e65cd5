"""``python -m casi_learner`` is the ``casi-learner`` command."""

from casi_learner.cli import main

raise SystemExit(main())
