"""Prints the third-party dependencies of the CASI distributions named (folders), one a line.

The Dockerfile installs them before it copies the source, so that a change to the source does
not install them again.
"""

import sys
import tomllib

for folder in sys.argv[1:]:
    with open(f"{folder}/pyproject.toml", "rb") as f:
        for dep in tomllib.load(f)["project"]["dependencies"]:
            if not dep.startswith("casi-"):
                print(dep)
