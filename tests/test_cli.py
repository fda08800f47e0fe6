"""The command line, end to end on a tiny model and the shipped demo data.

The training and evaluation commands pin ``--precision fp32``, like the tiny-model tests they mirror.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests_support import fails, invoke

from dawgen.constants import ADAPTER_DIR, METRICS_FILE, PREDICTIONS_FILE, RESULT_FILE, TRAINING_PLOT
from dawgen.data.sources import demo_dir
from dawgen.tasks import Family

DEMO = demo_dir()
TASK = str(DEMO / "task.yaml")
TEST = str(DEMO / "test.tsv")


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs) -> str:
    return str(tiny_model_dirs[Family.DECODER])


@pytest.fixture(scope="module")
def tuned_run(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = out / "run.yaml"
    config.write_text(f"task: {TASK}\ndata: {DEMO}\nmodel: {tiny}\nmax_steps: 5\nnum_virtual_tokens: 2\n")
    invoke("prompt-tune", "--config", str(config), "--steps", "2", "--eval-every", "1", "--test", TEST,
           "--out", str(out), "--precision", "fp32", "--set", "batch_size=4")  # fmt: skip
    return out


def test_help_of_every_command():
    for command in ("tasks", "prompt-tune", "evaluate", "demo"):
        assert "Usage" in invoke(command, "--help")


def test_tasks_lists_the_table():
    output = invoke("tasks")
    for name in ("QQP", "MRPC", "MNLI", "SNLI", "QNLI", "RTE", "SICK"):
        assert name in output


def test_prompt_tune_flags_override_the_yaml(tuned_run):
    result = json.loads((tuned_run / RESULT_FILE).read_text())
    assert result["config"]["max_steps"] == 2  # the flag beat the YAML's 5
    assert result["config"]["batch_size"] == 4  # from --set
    assert result["config"]["num_virtual_tokens"] == 2  # from the YAML
    assert 0 <= result["test"]["accuracy"] <= 100
    assert (tuned_run / ADAPTER_DIR / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("method", ["zero-shot", "in-context", "prompt"])
def test_evaluate_methods(method, tiny, tuned_run, tmp_path):
    extra = {"in-context": ["--data", str(DEMO), "--demonstrations-per-label", "2"],
             "prompt": ["--adapter", str(tuned_run / ADAPTER_DIR)]}  # fmt: skip
    invoke("evaluate", "--task", TASK, "--test", TEST, "--model", tiny, "--method", method, "--out", str(tmp_path),
           "--precision", "fp32", *extra.get(method, []))  # fmt: skip
    result = json.loads((tmp_path / RESULT_FILE).read_text())
    assert result["method"] == method and result["test_size"] == 150
    assert result["compute"]["precision"] == "fp32" and result["compute"]["device"] == "cpu"  # --precision fp32
    if method == "in-context":
        assert result["demonstrations_per_label"] == 2 and 0 < result["demonstrations_mean"] <= 4
    assert len((tmp_path / PREDICTIONS_FILE).read_text().splitlines()) == 150


def test_unknown_option_is_a_clear_error(tiny):
    output = fails("prompt-tune", "--task", TASK, "--data", str(DEMO), "--model", tiny, "--set", "learning_rat=0.1")
    assert "unknown option(s) ['learning_rat']" in output


def test_bad_option_value(tiny):
    output = fails("prompt-tune", "--task", TASK, "--data", str(DEMO), "--model", tiny, "--optimizer", "sgd")
    assert "'sgd' is not one of adafactor, adamw" in output


def test_bad_data_names_file_row_and_field(tiny, tmp_path):
    lines = (DEMO / "train.tsv").read_text().splitlines()
    fields = lines[3].split("\t")
    lines[3] = "\t".join([*fields[:-1], "maybe"])
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "dev.tsv").write_text((DEMO / "dev.tsv").read_text())
    output = fails(
        "prompt-tune", "--task", TASK, "--data", str(tmp_path), "--model", tiny, "--out", str(tmp_path / "o")
    )
    assert "train.tsv, row 3, field 'label'" in output and "maybe" in output
    assert not (tmp_path / "o").exists()


def test_unknown_task_and_missing_model(tiny, tmp_path):
    assert "unknown task 'NOPE'" in fails("evaluate", "--task", "NOPE", "--test", TEST, "--model", tiny)
    assert "no-such-model" in fails(
        "evaluate", "--task", TASK, "--test", TEST, "--model", str(tmp_path / "no-such-model")
    )


def test_prompt_tune_with_synthetic_data_paired_with_surgery(tiny, tmp_path):
    rows = [{"text_a": "A cat sleeps on the mat.", "text_b": t, "label": lab, "generator": "test"}
            for t, lab in (("A cat rests.", "entailment"), ("A dog barks.", "not_entailment"))] * 4  # fmt: skip
    rows.append({"text_a": "Same text.", "text_b": "Same text.", "label": "entailment"})  # a verbatim copy
    synthetic = tmp_path / "syn.jsonl"
    synthetic.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    invoke("prompt-tune", "--task", TASK, "--data", str(DEMO), "--model", tiny, "--synthetic", str(synthetic),
           "--steps", "4", "--eval-every", "2", "--virtual-tokens", "2", "--syn-batch-size", "2", "--eps", "0.5",
           "--precision", "fp32", "--out", str(out))  # fmt: skip
    result = json.loads((out / RESULT_FILE).read_text())
    assert result["combine"] == "paired" and result["surgery"] is True and result["config"]["eps"] == 0.5
    assert result["synthetic"] == {"size": 8, "per_label": {"entailment": 4, "not_entailment": 4}, "dropped_copies": 1}
    assert 0.0 <= result["conflict_rate"] <= 1.0
    assert (out / TRAINING_PLOT).stat().st_size > 10_000
    records = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert all({"cosine", "conflict", "real_loss", "syn_loss"} <= set(r) for r in records if r["kind"] == "step")


def test_surgery_needs_paired(tiny):
    output = fails("prompt-tune", "--task", TASK, "--data", str(DEMO), "--model", tiny, "--combine", "merged",
                   "--surgery")  # fmt: skip
    assert "gradient surgery needs combine 'paired'" in output


def test_missing_required_options_are_named():
    assert "missing option(s) --task, --data" in fails("prompt-tune")
    assert "missing option(s) --test" in fails("evaluate", "--task", "RTE")
    assert "missing option(s) --data" in fails("tune-generator", "--task", "RTE")
