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
import torch
import yaml
from tests_support import TEST_PRECISION
from typer.testing import CliRunner

from dawgen.classifier.adapter import save_prompt
from dawgen.cli import app
from dawgen.cli.pipeline import nest
from dawgen.config import ConfigError, config_from_dict
from dawgen.constants import MANIFEST_FILE, RESULTS_FILE, RESULTS_TABLE, SYNTHETIC_FILE
from dawgen.data.sources import DEMO_TASK_FILE, demo_dir, load_fewshot
from dawgen.generator.config import Variant
from dawgen.models import precision
from dawgen.models.precision import describe_record
from dawgen.pipeline import RunConfig, parse_method
from dawgen.pipeline.manifest import Manifest
from dawgen.pipeline.methods import MethodKind
from dawgen.pipeline.run import SeedRun, stage_precision
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEMO = demo_dir()


def write_config(folder: Path, model: Path, precision: str | None = None, **changes) -> Path:
    """A run config for the demo task on ``model``, small enough for a test; ``precision`` pins every stage's
    (left out: "auto", which resolves to the session's test precision in this process only)."""
    config = {
        "tasks": [str(DEMO / DEMO_TASK_FILE)], "data": str(DEMO), "test": str(DEMO / "dev.tsv"),
        "seeds": [13], "methods": ["pt", "ours"], "generator_model": str(model), "classifier_model": str(model),
        "quality": False,
        "generator": {"epochs": 1, "per_label_batch": 8, "num_prompt_tokens": 4},
        "generation": {"per_label": 40, "batch_size": 2, "max_new_tokens": 12, "device": "cpu"},
        "classifier": {"max_steps": 4, "eval_every": 2, "batch_size": 4, "syn_batch_size": 4, "num_virtual_tokens": 4},
        **changes,
    }  # fmt: skip
    if precision is not None:
        for section in ("generator", "generation", "classifier"):
            config[section] = {**config[section], "precision": precision}
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
    assert "\nprecision: " in rerun.output  # below the final table
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == before
    shorter = {"max_steps": 2, "eval_every": 2, "batch_size": 4, "syn_batch_size": 4, "num_virtual_tokens": 4}
    changed = write_config(tmp_path, talkative_dir, classifier=shorter)
    output = run_cli(changed, out).output
    assert output.count("(cached)") == 2  # the generator and the synthetic set
    assert len(list(out.rglob("result.json"))) == len(before) + 2


def test_a_run_killed_in_stage_2_resumes_to_the_same_result(reference, talkative_dir, tmp_path):
    out, config = tmp_path / "run", write_config(tmp_path, talkative_dir, TEST_PRECISION)  # another process
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
    config_from_dict(RunConfig, {"tasks": ["RTE"], "data": "x", "baselines": {"ft": {}}})  # kept for --methods ft
    with pytest.raises(ConfigError, match="not a baseline method"):
        config_from_dict(RunConfig, {"tasks": ["RTE"], "data": "x", "baselines": {"ours": {}}})
    with pytest.raises(ConfigError, match="unknown option"):  # an unused baseline's options are checked too
        config_from_dict(RunConfig, {"tasks": ["RTE"], "data": "x", "baselines": {"ft": {"max_stepz": 2}}})


def test_optima_runs_as_a_method_and_never_reads_the_pool_labels(tiny_decoder_dir, tmp_path):
    from dawgen.data.readers import load_split

    pairs = load_split(get_task(str(DEMO / DEMO_TASK_FILE)), DEMO / "test.tsv")[:12]
    source = tmp_path / "mnli.jsonl"  # the source task, labelled: 4 rows of each MNLI label
    rows = [{"premise": e.text_a, "hypothesis": e.text_b, "label": label}
            for e, label in zip(pairs, ["entailment", "neutral", "contradiction"] * 4, strict=True)]  # fmt: skip
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tested = []
    for name, label in (("gold", None), ("garbage", "%%not-a-label%%")):
        root = tmp_path / name  # a data root: <root>/<task>/pool/train.json
        (root / "demo-nli" / "pool").mkdir(parents=True)
        pool = [{"sentence1": e.text_a, "sentence2": e.text_b, "label": label or e.label} for e in pairs]
        (root / "demo-nli" / "pool" / "train.json").write_text(json.dumps(pool))
        optima = {"source_data": str(source), "source_k": 2, "pool": str(root), "pretrain_steps": 2,
                  "pretrain_batch_size": 3, "max_steps": 2, "eval_every": 1, "batch_size": 4,
                  "num_virtual_tokens": 4, "device": "cpu"}  # fmt: skip
        config = write_config(tmp_path, tiny_decoder_dir, methods=["pt", "optima"], baselines={"optima": optima})
        run_cli(config, tmp_path / f"run-{name}")
        pt, record = results(tmp_path / f"run-{name}")
        assert record["method"] == "optima" and record["trainable_parameters"] == pt["trainable_parameters"]
        assert (tmp_path / f"run-{name}" / record["folder"] / "pretrain" / "adapter").is_dir()
        tested.append((record["test"], record["dev"]))
    assert tested[0] == tested[1]  # garbage pool labels: the same run


def test_the_oracle_trains_on_gold_pool_rows_that_are_no_kshot_row(talkative_dir, tmp_path):
    from dawgen.data.oracle import ORACLE_LABEL, pair_key
    from dawgen.data.readers import load_split, write_examples_tsv
    from dawgen.tasks import get_task

    task = get_task(str(DEMO / DEMO_TASK_FILE))
    root = tmp_path / "data" / task.name  # seed 13: the demo's split; seed 42: 4 + 4 test rows per label
    kshot = {13: [load_split(task, DEMO / name) for name in ("train.tsv", "dev.tsv")]}
    test_rows = load_split(task, DEMO / "test.tsv")
    by_label = [[e for e in test_rows if e.label == label] for label in task.labels]
    kshot[42] = [[e for rows in by_label for e in rows[:4]], [e for rows in by_label for e in rows[4:8]]]
    for seed, splits in kshot.items():
        for name, rows in zip(("train", "dev"), splits, strict=True):
            write_examples_tsv(root / "k-shot" / f"16-{seed}" / f"{name}.tsv", rows)
    every_kshot_row = [e for splits in kshot.values() for rows in splits for e in rows]
    pool = [*every_kshot_row, *test_rows]  # seed 42's 16 k-shot rows are among the test rows too
    (root / "pool").mkdir()
    records = {str(i): {"text_a": e.text_a, "text_b": e.text_b, "label": e.label} for i, e in enumerate(pool)}
    (root / "pool" / "train.json").write_text(json.dumps(records))
    classifier = {"max_steps": 3, "eval_every": 3, "batch_size": 4, "syn_batch_size": 4, "num_virtual_tokens": 4,
                  "precision": "fp32", "device": "cpu"}  # fmt: skip
    config = write_config(tmp_path, talkative_dir, data=str(tmp_path / "data"), methods=["pt", "oracle+paired+surgery"],
                          generation={"per_label": 6}, classifier=classifier)  # fmt: skip
    out = tmp_path / "run"
    output = run_cli(config, out).output
    assert "bal" in output  # the printed table shows balanced accuracy
    _, oracle = results(out)
    assert oracle["method"] == "oracle+paired+surgery" and oracle["generator"] is None
    assert oracle["conflict_rate"] is not None and "balanced_accuracy" in oracle["test"]
    assert oracle["synthetic"].startswith(f"{task.name}/seed-13/oracle-")
    assert oracle["synthetic"].endswith(SYNTHETIC_FILE)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["oracle", "classifier", "classifier"]  # no generator tuned
    sampled = load_split(task, out / oracle["synthetic"])
    forbidden = {pair_key(e) for e in every_kshot_row}
    assert len(sampled) == 12 and not [e for e in sampled if pair_key(e) in forbidden]
    assert {label: sum(e.label == label for e in sampled) for label in task.labels} == dict.fromkeys(task.labels, 6)
    summary = json.loads((out / oracle["synthetic"]).with_name("synthetic.summary.json").read_text())
    assert summary["source"] == ORACLE_LABEL and summary["removed"]["kshot_rows"] == len(every_kshot_row) + 16
    assert summary["pool"] == str(root / "pool" / "train.json") and len(summary["kshot_folders"]) == 2
    assert ORACLE_LABEL in (out / RESULTS_TABLE).read_text()
    assert run_cli(config, out).output.count("(cached)") == 3
    from dawgen.api import report

    text = report(out).read_text()
    assert "| oracle+paired+surgery [oracle (gold pool labels)] |" in text and "gold-data oracle" in text


def test_stage_2_filters_get_the_runs_kshot_split_and_its_classifier(talkative_dir, tiny_decoder_dir, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    """The judge and the relatedness floor learn from the run's k-shot train split; ``consistency_classifier``
    has ``{task}`` and ``{seed}`` filled in, and what the classifier holds is part of the stage key."""
    calls = []
    monkeypatch.setattr("dawgen.synthesis.generate.generate_synthetic", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(SeedRun, "generator", lambda self, variant: (tmp_path / "gen", "generator-key"))
    monkeypatch.setattr(SeedRun, "timed", lambda self, stage, name, folder, key, done, work, precision: work())
    adapter = tmp_path / "classifiers" / "demo-nli-13" / "adapter"
    save_prompt(torch.zeros(4, 32), Family.DECODER, str(tiny_decoder_dir), adapter)
    generation = {"per_label": 4, "consistency_filter": "classifier",
                  "consistency_classifier": str(tmp_path / "classifiers" / "{task}-{seed}")}  # fmt: skip
    config = config_from_dict(RunConfig, yaml.safe_load(write_config(tmp_path, talkative_dir,
                                                                     generation=generation).read_text()))  # fmt: skip
    run = SeedRun(config, config.specs()[0], 13, tmp_path / "run", "data-key", Manifest(tmp_path, {}), False)
    first = run.synthetic(Variant.DAWGEN)
    (_, _, gen_config), kwargs = calls[-1]
    assert gen_config.consistency_classifier == str(tmp_path / "classifiers" / "demo-nli-13")
    assert kwargs["classifier"].folder == adapter and kwargs["train"] == load_fewshot(run.task, DEMO).train
    save_prompt(torch.ones(4, 32), Family.DECODER, str(tiny_decoder_dir), adapter)  # another classifier, same path
    assert run.synthetic(Variant.DAWGEN).key != first.key


# --- precision ------------------------------------------------------------------------------------


def stage_folders(config: RunConfig, folder: Path, monkeypatch) -> dict[str, str]:
    """The folder name (with its key) of every stage of ``config``'s first task and seed; nothing runs."""
    names: dict[str, str] = {}

    def timed(self, stage, name, path, key, done, work, precision):
        names[f"{stage} {name}"] = path.name
        return {"test": {}}

    monkeypatch.setattr(SeedRun, "timed", timed)
    task, seed = config.specs()[0], config.seeds[0]
    run = SeedRun(config, task, seed, folder, "data-key", Manifest(folder, {}), show_progress=False)
    for variant in config.variants():
        run.synthetic(variant)
    for method in config.parsed_methods():
        run.method(method, None)
    return names


def test_stage_keys_include_the_precision_auto_resolves_to_here(
    talkative_dir, tmp_path, monkeypatch, real_auto_precision
):
    """A run folder moved to a CPU without native bf16 must not reuse stages that ran in bf16 autocast."""
    methods = ["zero-shot", "pt", "ours", "ft"]
    auto = config_from_dict(
        RunConfig, yaml.safe_load(write_config(tmp_path, talkative_dir, methods=methods).read_text())
    )
    fp32 = config_from_dict(
        RunConfig, yaml.safe_load(write_config(tmp_path, talkative_dir, "fp32", methods=methods).read_text())
    )
    fp32.baselines = {"ft": {"precision": "fp32"}}
    folders = {}
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert stage_precision(auto.classifier_config(parse_method("pt"), 13)) == (
            "bf16-autocast" if native else "fp32"
        )
        folders[native] = (stage_folders(auto, tmp_path, monkeypatch), stage_folders(fp32, tmp_path, monkeypatch))
    with_bf16, without = folders[True][0], folders[False][0]
    assert set(with_bf16) == {"generator dawgen", "synthesis dawgen", "evaluation zero-shot", "classifier pt",
                              "classifier ours", "baseline ft"}  # fmt: skip
    assert all(with_bf16[stage] != without[stage] for stage in with_bf16)  # every stage, "auto" everywhere
    assert folders[True][1] == folders[False][1]  # pinned fp32: the same stages on either CPU
    assert folders[False][1]["classifier pt"] != without["classifier pt"]  # "fp32" is another setting than "auto"


def test_records_results_and_manifest_say_their_precision(reference):
    expected = {"fp32": "fp32", "bf16": "bf16-autocast"}[TEST_PRECISION]
    for record in results(reference):
        assert record["compute"]["precision"] == expected and record["compute"]["device"] == "cpu"
        assert record["compute"]["cpu_native_bf16"] is precision.cpu_has_native_bf16()  # the real CPU
    pt, ours = results(reference)
    decoding = {"bf16-autocast": "bf16"}.get(expected, expected)  # stage 2 casts the weights instead of autocast
    assert pt["synthetic_compute"] is None and ours["synthetic_compute"]["precision"] == decoding
    manifest = json.loads((reference / MANIFEST_FILE).read_text())
    by_stage = {s["stage"]: s["precision"] for s in manifest["stages"]}
    assert by_stage == {"generator": expected, "synthesis": decoding, "classifier": expected}
    assert "cpu_native_bf16" in manifest
    line = "precision: " + describe_record(pt["compute"])
    assert line in (reference / RESULTS_TABLE).read_text().splitlines()
    assert line.startswith("precision: bf16 autocast (CPU " if TEST_PRECISION == "bf16" else "precision: fp32 (CPU ")


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


def test_two_processes_sharing_a_run_folder_keep_each_others_stages(tmp_path):
    """Two `dawgen run` processes on one folder (say, other methods) each open the manifest once; every
    stage either records is kept, and a stage recorded again replaces its old entry."""
    first, second = Manifest.open(tmp_path, {"methods": ["pt"]}), Manifest.open(tmp_path, {"methods": ["ours"]})
    first.record("classifier", "RTE", 13, "pt", tmp_path / "RTE/seed-13/pt-a", "a", 1.0, "fp32")
    second.record("classifier", "RTE", 13, "ours", tmp_path / "RTE/seed-13/ours-b", "b", 2.0, "fp32")
    first.record("classifier", "RTE", 13, "pt", tmp_path / "RTE/seed-13/pt-a", "a", 3.0, "fp32")
    stages = json.loads((tmp_path / MANIFEST_FILE).read_text())["stages"]
    assert sorted((s["name"], s["seconds"]) for s in stages) == [("ours", 2.0), ("pt", 3.0)]
