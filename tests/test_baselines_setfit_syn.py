"""setfit+syn: SetFit on the real pairs plus a synthetic set, as a baseline function and as a method of a run."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from tests_support import RTE_PAIRS
from typer.testing import CliRunner

from dawgen.baselines import BASELINES, SetFitSynConfig, run_setfit_syn
from dawgen.baselines.setfit import INSTALL_HINT
from dawgen.baselines.setfit_syn import sample_per_label
from dawgen.cli import app
from dawgen.config import ConfigError
from dawgen.constants import MANIFEST_FILE, RESULT_FILE, RESULTS_FILE, SYNTHETIC_FILE
from dawgen.data.example import DataError, Example
from dawgen.data.sources import DEMO_TASK_FILE, demo_dir
from dawgen.generator.config import Variant
from dawgen.pipeline import RunConfig, parse_method
from dawgen.pipeline.methods import MethodKind
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_setfit = pytest.mark.skipif(
    importlib.util.find_spec("setfit") is None, reason=f"setfit is an optional extra: {INSTALL_HINT}"
)
RTE = get_task("RTE")
DEMO = demo_dir()
SYNTHETIC = [  # FewGen's format: text1 / text2 / label
    {"text1": "A boy kicks a ball in the yard.", "text2": "A child is playing.", "label": "entailment"},
    {"text1": "A boy kicks a ball in the yard.", "text2": "The boy is asleep.", "label": "not_entailment"},
    {"text1": "The market opens at nine.", "text2": "The market has opening hours.", "label": "entailment"},
    {"text1": "The market opens at nine.", "text2": "The market never opens.", "label": "not_entailment"},
    {"text1": "She painted the fence white.", "text2": "The fence was painted.", "label": "entailment"},
    {"text1": "She painted the fence white.", "text2": "She painted the fence black.", "label": "not_entailment"},
    {"text1": "It snowed.", "text2": "It snowed.", "label": "entailment"},  # a verbatim copy: dropped
]


@pytest.fixture
def synthetic_file(tmp_path):
    path = tmp_path / "gen-train.json"
    path.write_text(json.dumps(SYNTHETIC))
    return path


def test_method_names_parse_and_options_layer_over_setfit():
    for name, variant in (("setfit+syn", Variant.DAWGEN), ("setfit+plain+syn", Variant.PLAIN),
                          ("setfit+fewgen+syn", Variant.FEWGEN), ("setfit+dawgen+syn", Variant.DAWGEN)):  # fmt: skip
        method = parse_method(name)
        assert (method.kind, method.variant, method.baseline) == (MethodKind.BASELINE, variant, "setfit+syn")
        assert method.needs_synthetic
    assert parse_method("setfit").baseline == "setfit" and not parse_method("setfit").needs_synthetic
    with pytest.raises(ConfigError, match="'oracle' is not a generator"):
        parse_method("setfit+oracle+syn")
    with pytest.raises(ConfigError, match=r"setfit\+<plain\|fewgen\|dawgen>\+syn"):
        parse_method("setfit+nope")
    assert BASELINES["setfit+syn"].config is SetFitSynConfig and BASELINES["setfit+syn"].uses_synthetic
    with pytest.raises(ValueError, match="synthetic_per_label"):
        SetFitSynConfig(synthetic_per_label=0)
    external = {"synthetic_file": "sets/{task}/16-{seed}/gen-train.json", "synthetic_per_label": 5}
    config = RunConfig(
        tasks=["RTE"], data="x", seeds=[13, 42], methods=["setfit+plain+syn", "setfit+fewgen+syn"],
        baselines={"setfit": {"num_iterations": 3}, "setfit+fewgen+syn": external},
    )  # fmt: skip
    assert config.variants() == [Variant.PLAIN]  # fewgen's set is a file: no fewgen generator is tuned
    fewgen = config.baseline_config("setfit+fewgen+syn", RTE, 42)
    assert isinstance(fewgen, SetFitSynConfig) and fewgen.num_iterations == 3 and fewgen.seed == 42
    assert (fewgen.synthetic_file, fewgen.synthetic_per_label) == ("sets/RTE/16-42/gen-train.json", 5)
    plain = config.baseline_config("setfit+plain+syn", RTE, 13)
    assert (plain.num_iterations, plain.synthetic_file, plain.synthetic_per_label) == (3, None, None)
    with pytest.raises(ConfigError, match=r"setfit\+<plain\|fewgen\|dawgen>\+syn"):  # a misspelt baseline's options
        RunConfig(tasks=["RTE"], data="x", methods=["pt"], baselines={"setfit+nope+syn": {}})
    with pytest.raises(ConfigError, match="unknown option"):  # setfit's own options stay setfit's
        RunConfig(tasks=["RTE"], data="x", methods=["setfit"], baselines={"setfit": {"synthetic_per_label": 2}})


def test_label_balanced_draw_of_the_synthetic_rows():
    rows = [Example(f"t{i}", "entailment" if i % 3 else "not_entailment", "b") for i in range(12)]  # 8 vs 4
    drawn = sample_per_label(rows, RTE.labels, 3, seed=13)
    assert [e.label for e in drawn].count("entailment") == 3 == [e.label for e in drawn].count("not_entailment")
    assert drawn == sample_per_label(rows, RTE.labels, 3, seed=13) != sample_per_label(rows, RTE.labels, 3, seed=1)
    assert drawn == sorted(drawn, key=rows.index)  # in the set's order
    assert len(sample_per_label(rows, RTE.labels, 100, seed=13)) == 8  # 4 of each: the shorter label's count
    assert sample_per_label(rows, RTE.labels, None, seed=13) == rows
    with pytest.raises(DataError, match="no row of label"):
        sample_per_label(rows[1:3], RTE.labels, 2, seed=13)


def test_without_a_synthetic_set_the_error_says_where_to_give_one():
    with pytest.raises(ValueError, match="needs a synthetic set"):
        run_setfit_syn(None, RTE, RTE_PAIRS, RTE_PAIRS, config=SetFitSynConfig(body="unused"))


@needs_setfit
def test_setfit_syn_runs_on_a_tiny_body_and_records_its_synthetic_set(tiny_model_dirs, synthetic_file, tmp_path):
    body = str(tiny_model_dirs[Family.MASKED])
    config = SetFitSynConfig(body=body, num_iterations=1, batch_size=4, device="cpu", synthetic_per_label=2)
    out = tmp_path / "out"
    result = run_setfit_syn(None, RTE, RTE_PAIRS, RTE_PAIRS, RTE_PAIRS, config, out, False, synthetic=synthetic_file)
    assert result["method"] == "setfit+syn" and 0 <= result["test"]["accuracy"] <= 100
    assert result["synthetic"] == {
        "path": str(synthetic_file), "origin": "run", "rows": 6, "dropped_copies": 1, "synthetic_per_label": 2,
        "used": 4, "used_per_label": {"entailment": 2, "not_entailment": 2}, "real": 4,
    }  # fmt: skip
    assert json.loads((out / RESULT_FILE).read_text()) == result
    assert run_setfit_syn(None, RTE, RTE_PAIRS, RTE_PAIRS, RTE_PAIRS, config, out, synthetic=synthetic_file) == result


@needs_setfit
def test_setfit_syn_in_a_run_trains_on_its_generators_set_or_a_file(talkative_dir, tiny_model_dirs, synthetic_file,
                                                                    tmp_path):  # fmt: skip
    setfit = {"body": str(tiny_model_dirs[Family.MASKED]), "num_iterations": 1, "batch_size": 4, "device": "cpu"}
    config = {
        "tasks": [str(DEMO / DEMO_TASK_FILE)], "data": str(DEMO), "test": str(DEMO / "dev.tsv"), "seeds": [13],
        "methods": ["setfit+plain+syn", "setfit+fewgen+syn"], "generator_model": str(talkative_dir),
        "classifier_model": str(talkative_dir), "quality": False,
        "generator": {"epochs": 1, "per_label_batch": 8, "num_prompt_tokens": 4, "precision": "fp32"},
        "generation": {"per_label": 6, "batch_size": 2, "max_new_tokens": 12, "precision": "fp32", "device": "cpu"},
        "baselines": {"setfit": setfit, "setfit+fewgen+syn": {"synthetic_file": str(synthetic_file),
                                                              "synthetic_per_label": 1}},
    }  # fmt: skip
    path, out = tmp_path / "run.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", "-c", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert [(s["stage"], s["name"]) for s in manifest["stages"]] == [
        ("generator", "plain"), ("synthesis", "plain"), ("baseline", "setfit+plain+syn"),
        ("baseline", "setfit+fewgen+syn"),
    ]  # fmt: skip
    own, external = json.loads((out / RESULTS_FILE).read_text())["records"]
    assert own["synthetic"].startswith("demo-nli/seed-13/synthetic-plain-")
    assert own["synthetic"].endswith(SYNTHETIC_FILE)
    assert own["generator"].startswith("demo-nli/seed-13/generator-plain-")
    assert (external["synthetic"], external["generator"]) == (str(synthetic_file.resolve()), None)
    own_result = json.loads((out / own["folder"] / RESULT_FILE).read_text())
    assert own_result["synthetic"]["origin"] == "run" and own_result["synthetic"]["path"] == str(out / own["synthetic"])
    assert own_result["config"]["num_iterations"] == 1 and own_result["config"]["synthetic_per_label"] is None
    external_result = json.loads((out / external["folder"] / RESULT_FILE).read_text())
    assert external_result["synthetic"]["used_per_label"] == {"entailment": 1, "not_entailment": 1}
    rerun = CliRunner().invoke(app, ["run", "-c", str(path), "--out", str(out)])
    assert rerun.exit_code == 0 and rerun.output.count("(cached)") == 4
