"""`dawgen run` end to end on tiny models: all stages through the CLI, caching, a kill in stage 2 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dawgen.cli import app
from dawgen.cli.pipeline import nest
from dawgen.config import ConfigError, config_from_dict
from dawgen.constants import MANIFEST_FILE, RESULTS_FILE, RESULTS_TABLE, SYNTHETIC_FILE
from dawgen.data.sources import DEMO_TASK_FILE, demo_dir
from dawgen.pipeline import RunConfig, parse_method
from dawgen.pipeline.methods import MethodKind

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEMO = demo_dir()


def write_config(folder: Path, model: Path, **changes) -> Path:
    """A run config for the demo task on ``model``, small enough for a test."""
    config = {
        "tasks": [str(DEMO / DEMO_TASK_FILE)], "data": str(DEMO), "test": str(DEMO / "dev.tsv"),
        "seeds": [13], "methods": ["pt", "ours"], "generator_model": str(model), "classifier_model": str(model),
        "quality": False,
        "generator": {"epochs": 1, "per_label_batch": 8, "num_prompt_tokens": 4},
        "generation": {"per_label": 40, "batch_size": 2, "max_new_tokens": 12, "device": "cpu"},
        "classifier": {"max_steps": 4, "eval_every": 2, "batch_size": 4, "syn_batch_size": 4, "num_virtual_tokens": 4},
        **changes,
    }  # fmt: skip
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(config: Path, out: Path):
    result = CliRunner().invoke(app, ["run", "-c", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result


def results(out: Path) -> list[dict]:
    return json.loads((out / RESULTS_FILE).read_text())["records"]


@pytest.fixture(scope="module")
def reference(talkative_dir, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    run_cli(write_config(folder, talkative_dir), folder / "run")
    return folder / "run"


def test_a_run_writes_every_stage_the_manifest_and_the_results(reference):
    records = results(reference)
    assert [(r["task"], r["seed"], r["method"]) for r in records] == [("demo-nli", 13, "pt"), ("demo-nli", 13, "ours")]
    pt, ours = records
    assert pt["synthetic"] is None and ours["synthetic"].endswith(SYNTHETIC_FILE)
    assert (reference / ours["synthetic"]).stat().st_size > 0
    assert ours["conflict_rate"] is not None and pt["conflict_rate"] is None
    manifest = json.loads((reference / MANIFEST_FILE).read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["generator", "synthesis", "classifier", "classifier"]
    assert all(s["seconds"] >= 0 and (reference / s["folder"]).is_dir() for s in manifest["stages"])
    assert manifest["versions"]["torch"] and manifest["config"]["methods"] == ["pt", "ours"]
    assert "| ours |" in (reference / RESULTS_TABLE).read_text()


def test_a_rerun_skips_finished_stages_and_a_changed_setting_reruns_only_what_depends_on_it(
    reference, talkative_dir, tmp_path
):
    out = tmp_path / "run"
    config = write_config(tmp_path, talkative_dir)
    run_cli(config, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    rerun = run_cli(config, out)
    assert rerun.output.count("(cached)") == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == before
    shorter = {"max_steps": 2, "eval_every": 2, "batch_size": 4, "syn_batch_size": 4, "num_virtual_tokens": 4}
    changed = write_config(tmp_path, talkative_dir, classifier=shorter)
    output = run_cli(changed, out).output
    assert output.count("(cached)") == 2  # the generator and the synthetic set
    assert len(list(out.rglob("result.json"))) == len(before) + 2


def test_a_run_killed_in_stage_2_resumes_to_the_same_result(reference, talkative_dir, tmp_path):
    out, config = tmp_path / "run", write_config(tmp_path, talkative_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dawgen.cli", "run", "-c", str(config), "--out", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size for p in out.glob("*/seed-13/synthetic-*/*/part-*.jsonl")):
            assert process.poll() is None, "the run ended before stage 2 wrote anything"
            assert time.monotonic() < deadline, "stage 2 never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    synthetic = next(out.glob("*/seed-13/synthetic-*"))
    assert not (synthetic / SYNTHETIC_FILE).exists() and not (out / RESULTS_FILE).exists()  # killed mid-stage
    run_cli(config, out)
    assert [r["test"] for r in results(out)] == [r["test"] for r in results(reference)]
    theirs = next(reference.glob("*/seed-13/synthetic-*")) / SYNTHETIC_FILE
    assert (synthetic / SYNTHETIC_FILE).read_text() == theirs.read_text()


def test_method_names_parse_to_their_recipes_and_unknown_ones_fail_clearly():
    ours = parse_method("ours")
    assert (ours.variant, ours.combine, ours.surgery) == ("dawgen", "paired", True)
    assert parse_method("fewgen+merged_ls").kind is MethodKind.PROMPT_TUNING
    assert parse_method("zero-shot").kind is MethodKind.UNTRAINED and parse_method("pt").variant is None
    with pytest.raises(ConfigError, match="surgery needs paired"):
        parse_method("plain+merged+surgery")
    with pytest.raises(ConfigError, match="unknown method 'dawgen'"):
        parse_method("dawgen")


def test_run_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="'data' is required"):
        RunConfig(tasks=["RTE"])
    with pytest.raises(ConfigError, match="must not set \\['seed'\\]"):
        RunConfig(tasks=["RTE"], data="x", classifier={"seed": 1})
    with pytest.raises(ConfigError, match="classifier: unknown option"):
        RunConfig(tasks=["RTE"], data="x", classifier={"stepz": 1})
    with pytest.raises(ConfigError, match="unknown method"):
        config_from_dict(RunConfig, {"tasks": "RTE", "data": "x", "methods": ["pt", "nope"]})


def test_dotted_options_nest_into_sections_and_lists_split():
    options = nest({"classifier": {"lr": 1}, "classifier.max_steps": "5", "seeds": "13, 42", "tasks": ["RTE"]})
    assert options == {"classifier": {"lr": 1, "max_steps": "5"}, "seeds": ["13", "42"], "tasks": ["RTE"]}


def test_baselines_run_as_methods_of_a_run(talkative_dir, tmp_path):
    small = {"max_steps": 2, "eval_every": 1, "batch_size": 4, "device": "cpu"}
    sentences = (DEMO / "pool.txt").read_text().splitlines()[:60]
    documents = tmp_path / "documents.txt"  # PPT pairs sentences of one document: 4 sentences a line
    documents.write_text("\n".join(" ".join(sentences[i : i + 4]) for i in range(0, 60, 4)))
    ppt = {**small, "num_virtual_tokens": 4, "pool": str(documents), "pretrain_steps": 2, "pairs_per_type": 8,
           "dev_pairs_per_type": 4}  # fmt: skip
    config = write_config(tmp_path, talkative_dir, methods=["ft", "ppt"], baselines={"ft": small, "ppt": ppt})
    run_cli(config, tmp_path / "run")
    ft, ppt_record = results(tmp_path / "run")
    assert (ft["method"], ppt_record["method"]) == ("ft", "ppt")
    assert ft["trainable_parameters"] > 100 * ppt_record["trainable_parameters"] > 0  # every weight vs a prompt
    with pytest.raises(ConfigError, match="not among the methods"):
        config_from_dict(RunConfig, {"tasks": ["RTE"], "data": "x", "baselines": {"ft": {}}})


def test_in_context_takes_its_demonstrations_per_label_from_the_run_config(tiny_decoder_dir, tmp_path):
    out = tmp_path / "run"
    two = {"in-context": {"demonstrations_per_label": 2}}
    run_cli(write_config(tmp_path, tiny_decoder_dir, methods=["zero-shot", "in-context"], baselines=two), out)
    zero_shot, in_context = results(out)
    saved = json.loads((out / in_context["folder"] / "result.json").read_text())
    assert saved["method"] == "in-context" and saved["demonstrations_per_label"] == 2
    assert 0 < saved["demonstrations_mean"] <= 4 and saved["test_size"] == 32
    assert saved["max_length"] == 256  # the tiny model's positions: demonstrations beyond them are dropped
    # the default is k (the whole k-shot training split); a new setting is a new stage, zero-shot stays cached
    output = run_cli(write_config(tmp_path, tiny_decoder_dir, methods=["zero-shot", "in-context"]), out).output
    assert output.count("(cached)") == 1
    again = results(out)[1]
    assert again["folder"] != in_context["folder"] and results(out)[0]["folder"] == zero_shot["folder"]
    default = json.loads((out / again["folder"] / "result.json").read_text())
    assert default["demonstrations_per_label"] == 16 and default["demonstrations_mean"] >= 1
    with pytest.raises(ConfigError, match=r"baselines\.zero-shot: zero-shot takes no options"):
        config_from_dict(RunConfig, {"tasks": ["RTE"], "data": "x", "methods": ["zero-shot"],
                                     "baselines": {"zero-shot": {"demonstrations_per_label": 2}}})  # fmt: skip
