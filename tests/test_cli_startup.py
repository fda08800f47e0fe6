"""The CLI starts at once: help, `dawgen tasks` and argument errors load no heavy library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dawgen
from dawgen.cli import app

HEAVY = ("torch", "transformers", "peft", "matplotlib", "sentence_transformers", "setfit", "datasets", "accelerate")
WORKFLOW = ("run", "report", "tune-generator", "generate", "prompt-tune", "evaluate")
SRC = str(Path(dawgen.__file__).resolve().parents[1])  # the child imports the same dawgen as this test
CHILD = f"""
import sys
from dawgen.cli import app
app(sys.argv[1:], standalone_mode=False)
print("heavy:", *[name for name in {HEAVY!r} if name in sys.modules])
"""


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["prompt-tune", "--help"]], ids=" ".join)
def test_light_commands_load_no_heavy_library(args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    child = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, check=True)
    assert child.stdout.splitlines()[-1] == "heavy:", child.stdout


def test_help_lists_the_workflow():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Few-shot prompt tuning" in result.output
    first_words = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert [word for word in first_words if word in WORKFLOW] == list(WORKFLOW)
