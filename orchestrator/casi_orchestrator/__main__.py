"""``python -m casi_orchestrator`` is ``casi``."""

import sys

from casi_orchestrator.cli import main

sys.exit(main())
