"""Constants and helpers shared by test modules."""

import os
import socket
from pathlib import Path

import pytest

from dawgen.data.example import Example

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder not found at {DATA}")

# The precision of the tests that do not pin one: ``DAWGEN_TEST_PRECISION=fp32`` (the default) or ``bf16``.
# conftest makes "auto" resolve to it on the CPU in the test process, whatever CPU runs the suite (results
# still record the real one); a test that starts another process passes it on as a pinned precision.
# Tests whose assertions hold in fp32 only pin ``precision="fp32"`` and say so; ``make test-precisions``
# runs the suite once in each.
PRECISION_ENV = "DAWGEN_TEST_PRECISION"
TEST_PRECISIONS = ("fp32", "bf16")


def forced_precision() -> str:
    """``$DAWGEN_TEST_PRECISION`` (fp32 when unset); any other value is an error."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower() or "fp32"
    if value not in TEST_PRECISIONS:
        raise ValueError(f"{PRECISION_ENV} must be one of {', '.join(TEST_PRECISIONS)}, got {value!r}")
    return value


TEST_PRECISION = forced_precision()

# four labelled RTE-style pairs, repeated by tests that train on a handful of examples
RTE_PAIRS = [
    Example("A man is cutting bread in the kitchen.", "entailment", "A man is in the kitchen."),
    Example("The train left the station at noon.", "not_entailment", "The train arrived at noon."),
    Example("Two children play football in a big green park on Sunday.", "entailment", "Children play."),
    Example("The shop was closed all week.", "not_entailment", "The shop sold apples on Monday."),
]


def invoke(*args: str) -> str:
    """Run the CLI in-process; it must succeed. Returns its output."""
    from typer.testing import CliRunner

    from dawgen.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str) -> str:
    """Run the CLI in-process; it must fail as on bad input (one ``error:`` line, exit code 2). Returns the
    output with its whitespace collapsed."""
    from typer.testing import CliRunner

    from dawgen.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:"), result.output
    return " ".join(result.output.split())


def make_generator(model_dir: Path, folder: Path, task=None, tokens: int = 4) -> Path:
    """A generator folder with untuned label prompts (each label's description) for ``model_dir``; ``task``
    None: the demo task."""
    from dawgen.data.sources import demo_task
    from dawgen.generator import GeneratorConfig, LabelPrompts, TunedGenerator, label_texts, save_generator
    from dawgen.models.loading import load_model

    task = task or demo_task()
    loaded = load_model(str(model_dir))
    prompts = LabelPrompts.from_texts(loaded.model, loaded.tokenizer, label_texts(task), tokens).weight.detach()
    config = GeneratorConfig(variant="plain", num_prompt_tokens=tokens)
    generator = TunedGenerator(
        prompts, None, config, str(model_dir), task.name, task.labels, task.generator.connector, task.pair
    )
    return save_generator(generator, folder)


class Killed(Exception):
    """Stands in for SIGKILL."""


def die_during_write(monkeypatch, call: int) -> dict[str, int]:
    """The ``call``-th batch write of stage 2 gets half of its lines and half a line out, then the process dies."""
    import json

    from dawgen.synthesis.writer import PartWriter

    original, calls = PartWriter.write, {"n": 0}

    def write(self, records):
        records = list(records)
        calls["n"] += 1
        if calls["n"] == call:
            original(self, records[: len(records) // 2])
            self._handle.write(json.dumps(records[-1])[:20])
            self._handle.flush()
            raise Killed
        original(self, records)

    monkeypatch.setattr(PartWriter, "write", write)
    return calls


def free_port() -> int:
    """A TCP port free on this machine now, for a launcher's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
