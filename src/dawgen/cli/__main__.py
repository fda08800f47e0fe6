"""`python -m dawgen.cli` (as `accelerate launch -m dawgen.cli` runs it)."""

from dawgen.cli import app

app()
