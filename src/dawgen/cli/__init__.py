"""The `dawgen` command line. Each command reads an optional YAML config; flags override it.

One module per part of the workflow registers its commands on the shared ``app``.
"""

from dawgen.cli import classifier, export, pipeline, synthesis  # noqa: F401  (registers the commands)
from dawgen.cli.common import app

__all__ = ["app"]
