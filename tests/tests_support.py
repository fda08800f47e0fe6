"""Constants shared by test modules."""

from pathlib import Path

import pytest

from dawgen.data.example import Example

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder not found at {DATA}")

# four labelled RTE-style pairs, repeated by tests that train on a handful of examples
RTE_PAIRS = [
    Example("A man is cutting bread in the kitchen.", "entailment", "A man is in the kitchen."),
    Example("The train left the station at noon.", "not_entailment", "The train arrived at noon."),
    Example("Two children play football in a big green park on Sunday.", "entailment", "Children play."),
    Example("The shop was closed all week.", "not_entailment", "The shop sold apples on Monday."),
]
