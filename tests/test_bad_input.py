"""Bad input, counted: every command, given a bad file, YAML, option, synthetic set, generator, adapter or
model, exits with code 2 and one ``error:`` line naming the file and row/field (or the option), and leaves
no output behind.

Each case is a row of ``CASES``: the command line (built from the inputs written once per module) and
the pieces its error line must hold. Most cases must fail before any model is loaded: they pass
``--model`` a path that does not exist (``W.no_model``), so loading a model first would show up as the
wrong error. The few that need a model get the tiny decoder of ``tests/tiny_models.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dawgen.classifier.adapter import save_prompt
from dawgen.cli import app
from dawgen.data.sources import demo_dir
from dawgen.generator.artifacts import TunedGenerator, save_generator
from dawgen.generator.config import GeneratorConfig
from dawgen.tasks import Family, get_task

DEMO = demo_dir()
TASK = str(DEMO / "task.yaml")
TEST = str(DEMO / "test.tsv")
RTE = get_task("RTE")


@dataclass(frozen=True)
class W:
    """Where a case finds its inputs: ``inputs`` (written once), ``out`` (must not appear), the models."""

    inputs: Path
    out: Path
    tiny: str  # the tiny decoder's folder
    no_model: str  # a model path that does not exist: a case that loads a model before failing shows it

    def __truediv__(self, name: str) -> str:
        return str(self.inputs / name)


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[W], list[str]]
    says: tuple[str, ...]  # pieces of the error line, in any order
    not_says: tuple[str, ...] = ()


def demo_lines(name: str) -> list[str]:
    return (DEMO / name).read_text(encoding="utf-8").splitlines()


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def make_inputs(root: Path, tiny: Path) -> None:
    """Every bad (and the few good) input files the cases point at."""
    task_text = (DEMO / "task.yaml").read_text(encoding="utf-8")
    train, dev = demo_lines("train.tsv"), (DEMO / "dev.tsv").read_text(encoding="utf-8")
    fields = train[5].split("\t")
    bad_row = [*train[:5], "\t".join([*fields[:-1], "maybe"]), *train[6:]]  # data row 5 of 32
    write(root / "badrow/train.tsv", "\n".join(bad_row) + "\n")
    write(root / "badrow/dev.tsv", dev)
    write(root / "emptytrain/train.tsv", "")
    write(root / "emptytrain/dev.tsv", dev)
    write(root / "columns/train.tsv", "a\tb\tc\nx\ty\tz\n")
    write(root / "columns/dev.tsv", dev)
    test_bytes = (DEMO / "test.tsv").read_bytes().split(b"\n")
    test_bytes[7] += b"\xff"  # data row 7
    write(root / "utf8.tsv", b"\n".join(test_bytes))
    write(root / "binary.tsv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    # YAML: run configs and task files
    run = f"tasks: [{TASK}]\ndata: {DEMO}\ntest: {TEST}\n"
    write(root / "syntax.yaml", "tasks: [RTE\ndata: x\n")
    write(root / "unknown_key.yaml", run + "epochs: 3\n")
    write(root / "seeds_type.yaml", run + "seeds: [abc]\n")
    write(root / "section_type.yaml", run + "classifier: 5\n")
    write(root / "extends.yaml", "extends: missing-parent.yaml\n" + run)
    write(
        root / "in_context.yaml",
        run + "methods: [in-context]\nbaselines: {in-context: {demonstrations_per_label: 0}}\n",
    )
    write(
        root / "bad_test_run.yaml", f"tasks: [{TASK}]\ndata: {DEMO}\ntest: {root / 'utf8.tsv'}\nmethods: [zero-shot]\n"
    )
    write(root / "pt_type.yaml", f"task: {TASK}\ndata: {DEMO}\nmax_steps: lots\n")
    write(root / "task_unknown.yaml", task_text + "colour: red\n")
    write(root / "task_type.yaml", task_text.replace("labels: [entailment, not_entailment]", "labels: 5"))
    write(root / "task_syntax.yaml", "name: [demo\n")
    write(root / "task_kshot.yaml", task_text + "kshot_files: {train: 5}\n")
    masked_only = [line for line in task_text.splitlines() if not line.strip().startswith(("decoder:", "seq2seq:"))]
    write(root / "task_masked.yaml", "\n".join(masked_only) + "\n")
    # run folders for `dawgen report` and `dawgen run`
    (root / "emptyrun").mkdir()
    write(root / "badjson_run/results.json", "{bad json")
    write(root / "records_run/results.json", '{"records": 5}')
    write(root / "manifest_run/manifest.json", "{not json")
    write(root / "afile", "not a folder")
    # synthetic sets
    labels = ["entailment", "not_entailment", "maybe"]
    write(root / "syn_label.jsonl", jsonl([{"text_a": "A b.", "text_b": "C d.", "label": label} for label in labels]))
    write(root / "syn_field.jsonl", jsonl([{"text_a": "A.", "text_b": "B.", "label": "entailment"},
                                          {"text_a": "A.", "label": "entailment"}]))  # fmt: skip
    write(
        root / "syn_good.jsonl", jsonl([{"text_a": "A b.", "text_b": "C d.", "label": label} for label in labels[:2]])
    )
    write(root / "syn.json", '[{"text1": "a", "text2": "b", "label": "entailment"},]')
    # generator folders
    (root / "gen_empty").mkdir()
    write(root / "gen_json/generator.json", "{oops")
    settings = {"format": 1, "base_model": "x", "task": "RTE", "labels": list(RTE.labels), "connector": "\n",
                "pair": True, "variant": "plain", "prompt_shape": [2, 2, 8], "weight_net": None, "config": {},
                "info": {}}  # fmt: skip
    write(root / "gen_corrupt/generator.json", json.dumps(settings))
    write(root / "gen_corrupt/label_prompts.safetensors", b"garbage" * 20)
    for name, base_model in (("gen_rte", str(tiny)), ("gen_no_model", str(root / "gone-model"))):
        task = RTE if name == "gen_rte" else get_task(TASK)
        generator = TunedGenerator(
            torch.zeros(2, 2, 32), None, GeneratorConfig(variant="plain"), base_model, task.name, task.labels,
            task.generator.connector, True,
        )  # fmt: skip
        save_generator(generator, root / name)
    # adapters and models
    (root / "not_adapter").mkdir()
    write(root / "not_adapter/notes.txt", "hi")
    save_prompt(torch.zeros(2, 32), Family.DECODER, str(tiny), root / "adapter_corrupt")
    write(root / "adapter_corrupt/adapter_model.safetensors", b"garbage" * 20)
    save_prompt(torch.zeros(2, 7), Family.DECODER, str(tiny), root / "adapter_other_model")
    write(root / "bad.gguf", b"not a gguf file" * 10)


def run(*args: str) -> Callable[[W], list[str]]:
    """The command line of a case: ``{x}`` in an argument is ``W.inputs / x``; ``@out``, ``@tiny`` and
    ``@no_model`` are those fields of ``W``."""

    def build(w: W) -> list[str]:
        special = {"@out": str(w.out), "@tiny": w.tiny, "@no_model": w.no_model, "@demo": str(DEMO)}
        built = []
        for arg in args:
            if arg in special:
                built.append(special[arg])
            elif arg.startswith("{") and arg.endswith("}"):
                built.append(w / arg[1:-1])
            else:
                built.append(arg)
        return built

    return build


PT = ("prompt-tune", "--task", TASK, "--model", "@no_model", "--out", "@out")
TG = ("tune-generator", "--task", TASK, "--model", "@no_model", "--out", "@out")
EV = ("evaluate", "--task", TASK, "--model", "@no_model", "--out", "@out")
RUN_IN = ("run", "--tasks", TASK, "--data", "@demo", "--set", f"test={TEST}", "--classifier-model", "@no_model",
          "--generator-model", "@no_model")  # fmt: skip
RUN = (*RUN_IN, "--out", "@out")
UTF8 = "not valid UTF-8"

CASES = [
    # dawgen run: YAML, options, data
    Case("run-config-missing", run("run", "-c", "{none.yaml}", "--out", "@out"),
         ("none.yaml", "config file not found")),
    Case("run-yaml-syntax", run("run", "-c", "{syntax.yaml}", "--out", "@out"),
         ("syntax.yaml", "not valid YAML", "at line 2, column 5")),
    Case("run-unknown-key", run("run", "-c", "{unknown_key.yaml}", "--out", "@out"),
         ("unknown_key.yaml", "unknown option(s) ['epochs']")),
    Case("run-seeds-wrong-type", run("run", "-c", "{seeds_type.yaml}", "--out", "@out"),
         ("seeds_type.yaml", "'seeds' must be integers, got 'abc'")),
    Case("run-section-wrong-type", run("run", "-c", "{section_type.yaml}", "--out", "@out"),
         ("section_type.yaml", "'classifier' must be a mapping of options, got 5")),
    Case("run-bad-extends", run("run", "-c", "{extends.yaml}", "--out", "@out"),
         ("extends.yaml", "option 'extends'", "missing-parent.yaml")),
    Case("run-unknown-method", run(*RUN, "--methods", "pt,bogus"), ("unknown method 'bogus'",)),
    Case("run-negative-steps", run(*RUN, "--set", "classifier.max_steps=-5"),
         ("classifier", "max_steps must be at least 1, got -5")),
    Case("run-bad-precision", run(*RUN, "--set", "classifier.precision=fp64"),
         ("classifier", "precision must be auto, fp32 or bf16", "'fp64'")),
    Case("run-unknown-task", run("run", "--tasks", "NOPE", "--data", "@demo", "--out", "@out"),
         ("unknown task 'NOPE'",)),
    Case("run-bad-row-in-kshot", run("run", "--tasks", TASK, "--data", "{badrow}", "--set", f"test={TEST}",
                                     "--methods", "zero-shot", "--out", "@out"),
         ("badrow/train.tsv, row 5, field 'label'", "unknown label 'maybe'")),
    Case("run-non-utf8-test-set", run("run", "-c", "{bad_test_run.yaml}", "--out", "@out"),
         ("utf8.tsv, row 7", UTF8)),
    Case("run-in-context-option", run("run", "-c", "{in_context.yaml}", "--out", "@out"),
         ("baselines.in-context", "demonstrations_per_label must be at least 1, got 0")),
    Case("run-corrupt-manifest", run(*RUN_IN, "--methods", "zero-shot", "--out", "{manifest_run}"),
         ("manifest_run/manifest.json", "not a readable manifest")),
    Case("run-out-is-a-file", run(*RUN_IN, "--methods", "zero-shot", "--out", "{afile}"),
         ("--out", "afile", "is a file")),
    # dawgen report: run folders
    Case("report-missing-folder", run("report", "{no_run}"), ("no_run", "run folder not found")),
    Case("report-no-results", run("report", "{emptyrun}"), ("emptyrun/results.json is missing",)),
    Case("report-json-syntax", run("report", "{badjson_run}"),
         ("badjson_run/results.json", "invalid JSON", "line 1 column 2")),
    Case("report-records-wrong-type", run("report", "{records_run}"),
         ("records_run/results.json", "'records' must be a list, got 5")),
    # dawgen tune-generator: data, options, models, task files
    Case("tg-missing-data", run(*TG, "--data", "{no_data}"), ("no_data", "no such file or folder")),
    Case("tg-unknown-variant", run(*TG, "--data", "@demo", "--variant", "bogus"),
         ("option 'variant'", "'bogus' is not one of plain, fewgen, dawgen")),
    Case("tg-negative-epochs", run(*TG, "--data", "@demo", "--epochs", "-1"), ("epochs must be at least 1, got -1",)),
    Case("tg-weight-floor-above-one", run(*TG, "--data", "@demo", "--weight-floor", "1.5"),
         ("weight_floor must be in [0, 1]", "got 1.5")),
    Case("tg-missing-model-path", run(*TG, "--data", "@demo"), ("no such model file or folder", "never-loaded")),
    Case("tg-bad-gguf", run(*TG[:-4], "--model", "{bad.gguf}", "--data", "@demo", "--out", "@out"),
         ("bad.gguf", "not a GGUF file")),
    Case("tg-empty-train-file", run(*TG, "--data", "{emptytrain}"), ("emptytrain/train.tsv", "file is empty")),
    Case("tg-task-unknown-field",
         run("tune-generator", "--task", "{task_unknown.yaml}", "--data", "@demo", "--out", "@out"),
         ("task_unknown.yaml", "unknown field(s) ['colour']")),
    Case("tg-task-wrong-type", run("tune-generator", "--task", "{task_type.yaml}", "--data", "@demo", "--out", "@out"),
         ("task_type.yaml", "field 'labels' must be a list of label names, got 5")),
    Case("tg-task-yaml-syntax",
         run("tune-generator", "--task", "{task_syntax.yaml}", "--data", "@demo", "--out", "@out"),
         ("task_syntax.yaml", "not valid YAML", "line 2")),
    # dawgen generate: generator folders, options, pools, base models
    Case("gen-missing-folder", run("generate", "--generator", "{no_generator}", "--out", "@out"),
         ("no_generator", "generator folder not found"), ("generator.json is missing",)),
    Case("gen-no-generator-json", run("generate", "--generator", "{gen_empty}", "--out", "@out"),
         ("gen_empty", "generator.json is missing")),
    Case("gen-json-syntax", run("generate", "--generator", "{gen_json}", "--out", "@out"),
         ("gen_json/generator.json", "invalid JSON", "line 1 column 2")),
    Case("gen-corrupt-weights", run("generate", "--generator", "{gen_corrupt}", "--out", "@out"),
         ("gen_corrupt/label_prompts.safetensors", "not a readable safetensors file")),
    Case("gen-negative-per-label", run("generate", "--generator", "{gen_rte}", "--per-label", "-3", "--out", "@out"),
         ("per_label must be at least 1, got -3",)),
    Case("gen-unknown-stop-at", run("generate", "--generator", "{gen_rte}", "--stop-at", "comma", "--out", "@out"),
         ("option 'stop_at'", "'comma' is not one of auto, eos, sentence")),
    Case("gen-missing-pool", run("generate", "--generator", "{gen_rte}", "--pool", "{no_pool.txt}", "--out", "@out"),
         ("no_pool.txt", "no such pool file or folder")),
    Case("gen-task-mismatch", run("generate", "--generator", "{gen_rte}", "--task", "MNLI", "--out", "@out"),
         ("task 'MNLI'", "does not match the generator's")),
    Case("gen-base-model-gone", run("generate", "--generator", "{gen_no_model}", "--out", "@out"),
         ("no such model file or folder", "gone-model")),
    Case("gen-out-is-a-folder", run("generate", "--generator", "{gen_rte}", "--out", "{emptyrun}"),
         ("--out", "emptyrun", "is a folder")),
    Case("gen-judge-confidence-out-of-range",
         run("generate", "--generator", "{gen_rte}", "--judge-confidence", "1.5", "--out", "@out"),
         ("judge_confidence must be in (0, 1), got 1.5",)),
    Case("gen-judge-without-few-shot",
         run("generate", "--generator", "{gen_rte}", "--consistency-filter", "judge", "--out", "@out"),
         ("consistency_filter 'judge'", "k-shot training split", "--few-shot")),
    Case("gen-unknown-relatedness-floor",
         run("generate", "--generator", "{gen_rte}", "--relatedness-floor", "pool", "--out", "@out"),
         ("option 'relatedness_floor'", "'pool' is not one of off, kshot")),
    Case("gen-classifier-not-an-adapter",
         run("generate", "--generator", "{gen_rte}", "--consistency-filter", "classifier",
             "--consistency-classifier", "{not_adapter}", "--out", "@out"),
         ("not_adapter", "not a PEFT adapter (adapter_config.json is missing)")),
    # dawgen prompt-tune: data files, synthetic sets, options
    Case("pt-bad-row-in-the-middle", run(*PT, "--data", "{badrow}"),
         ("badrow/train.tsv, row 5, field 'label'", "unknown label 'maybe'")),
    Case("pt-binary-test-file", run(*PT, "--data", "@demo", "--test", "{binary.tsv}"),
         ("binary.tsv", UTF8, "byte 0x89 on line 1 (the header)"), ("row 0",)),
    Case("pt-wrong-columns", run(*PT, "--data", "{columns}"), ("columns/train.tsv", "found ['a', 'b', 'c']")),
    Case("pt-synthetic-bad-label", run(*PT, "--data", "@demo", "--synthetic", "{syn_label.jsonl}"),
         ("syn_label.jsonl, row 3, field 'label'", "unknown label 'maybe'")),
    Case("pt-synthetic-missing-field", run(*PT, "--data", "@demo", "--synthetic", "{syn_field.jsonl}"),
         ("syn_field.jsonl, row 2, field 'text_b'", "record has no key 'text_b'")),
    Case("pt-synthetic-json-syntax", run(*PT, "--data", "@demo", "--synthetic", "{syn.json}"),
         ("syn.json", "invalid JSON", "line 1 column 54")),
    Case("pt-negative-steps", run(*PT, "--data", "@demo", "--steps", "-3"), ("max_steps must be at least 1, got -3",)),
    Case("pt-bad-precision", run(*PT, "--data", "@demo", "--precision", "fp64"),
         ("precision must be auto, fp32 or bf16, got 'fp64'",)),
    Case("pt-steps-not-a-number", run(*PT, "--data", "@demo", "--steps", "abc"),
         ("Invalid value for '--steps'", "prompt-tune --help")),
    Case("pt-config-wrong-type", run("prompt-tune", "-c", "{pt_type.yaml}", "--model", "@no_model", "--out", "@out"),
         ("pt_type.yaml", "option 'max_steps'", "expected an integer, got 'lots'")),
    Case("pt-task-kshot-files-wrong-type",
         run("prompt-tune", "--task", "{task_kshot.yaml}", "--data", "@demo", "--out", "@out"),
         ("task_kshot.yaml", "field 'kshot_files.train' must be a file name, got 5")),
    Case("pt-task-without-the-models-template",  # loads the tiny decoder, then finds no decoder template
         run("prompt-tune", "--task", "{task_masked.yaml}", "--data", "@demo", "--model", "@tiny", "--out", "@out"),
         ("task 'demo-nli' has no template for decoder models", "templates.decoder")),
    # dawgen evaluate: methods, adapters, test files, options
    Case("ev-unknown-method", run(*EV, "--test", TEST, "--method", "bogus"),
         ("--method", "unknown method 'bogus'", "zero-shot, in-context, prompt")),
    Case("ev-missing-adapter", run(*EV, "--test", TEST, "--method", "prompt", "--adapter", "{no_adapter}"),
         ("no_adapter", "adapter folder not found")),
    Case("ev-not-an-adapter", run(*EV, "--test", TEST, "--method", "prompt", "--adapter", "{not_adapter}"),
         ("not_adapter", "not a PEFT adapter (adapter_config.json is missing)")),
    Case("ev-corrupt-adapter-weights",  # loads the tiny decoder
         run(*EV[:3], "--model", "@tiny", "--out", "@out", "--test", TEST, "--method", "prompt",
             "--adapter", "{adapter_corrupt}", "--precision", "fp32"),
         ("adapter_corrupt/adapter_model.safetensors", "not a readable safetensors file")),
    Case("ev-adapter-of-another-model",  # loads the tiny decoder
         run(*EV[:3], "--model", "@tiny", "--out", "@out", "--test", TEST, "--method", "prompt",
             "--adapter", "{adapter_other_model}", "--precision", "fp32"),
         ("adapter_other_model", "7 dimensions", "32")),
    Case("ev-missing-test-file", run(*EV, "--test", "{none.tsv}"), ("none.tsv", "file not found")),
    Case("ev-non-utf8-row", run(*EV, "--test", "{utf8.tsv}"), ("utf8.tsv, row 7", UTF8, "line 8")),
    Case("ev-zero-demonstrations",
         run(*EV, "--test", TEST, "--method", "in-context", "--data", "@demo", "--demonstrations-per-label", "0"),
         ("demonstrations_per_label must be at least 1, got 0",)),
    Case("ev-in-context-without-data", run(*EV, "--test", TEST, "--method", "in-context"),
         ("method 'in-context' needs training examples", "--data")),
    Case("ev-bad-precision", run(*EV[:3], "--model", "@tiny", "--out", "@out", "--test", TEST, "--precision", "fp64"),
         ("precision", "fp64")),
    # dawgen inspect-synthetic and judge-synthetic: synthetic sets and real data
    Case("inspect-missing-set", run("inspect-synthetic", "{none.jsonl}", "--real", "@demo", "--task", TASK,
                                    "--out", "@out"), ("none.jsonl", "file not found")),
    Case("inspect-bad-label", run("inspect-synthetic", "{syn_label.jsonl}", "--real", "@demo", "--task", TASK,
                                  "--out", "@out"), ("syn_label.jsonl, row 3, field 'label'", "unknown label 'maybe'")),
    Case("inspect-missing-real-data", run("inspect-synthetic", "{syn_good.jsonl}", "--real", "{no_real}",
                                          "--task", TASK, "--out", "@out"), ("no_real", "no such file or folder")),
    Case("judge-missing-reference", run("judge-synthetic", "{syn_field.jsonl}", "--reference", "{none.tsv}",
                                        "--held-out", TEST, "--task", TASK, "--out", "@out"),
         ("none.tsv", "file not found")),
    Case("judge-set-missing-field", run("judge-synthetic", "{syn_field.jsonl}", "--reference", TEST,
                                        "--held-out", TEST, "--task", TASK, "--out", "@out"),
         ("syn_field.jsonl, row 2, field 'text_b'",)),
    # dawgen tasks and dawgen demo: options
    Case("tasks-unknown-option", run("tasks", "--bogus"), ("No such option: --bogus", "tasks --help")),
    Case("demo-out-is-a-file", run("demo", "--out", "{afile}"), ("--out", "afile", "is a file")),
    Case("demo-bad-precision", run("demo", "--out", "@out", "--precision", "fp8"),
         ("precision must be one of auto, fp32, bf16", "'fp8'")),
]  # fmt: skip


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and modification time."""
    return {
        str(path): (path.stat().st_size if path.is_file() else -1, path.stat().st_mtime_ns)
        for folder in folders
        for path in [folder, *folder.rglob("*")]
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_decoder_dir) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    make_inputs(root, tiny_decoder_dir)
    return root


def test_the_table_counts_at_least_30_cases_across_every_command():
    assert len(CASES) >= 30 and len({case.name for case in CASES}) == len(CASES)
    commands = {case.args(W(Path("i"), Path("o"), "t", "m"))[0] for case in CASES}
    assert commands == {"run", "report", "tune-generator", "generate", "prompt-tune", "evaluate",
                        "inspect-synthetic", "judge-synthetic", "tasks", "demo"}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_is_one_error_line_exit_2_and_no_output(case: Case, inputs, tiny_decoder_dir, tmp_path):
    w = W(inputs, tmp_path / "out", str(tiny_decoder_dir), str(tmp_path / "never-loaded"))
    before = snapshot(inputs, tmp_path)
    result = CliRunner().invoke(app, case.args(w))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for piece in case.says:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"
    for piece in case.not_says:
        assert piece not in lines[0], f"{piece!r} in {lines[0]!r}"
    assert not w.out.exists(), f"{case.name} left {w.out} behind"
    assert snapshot(inputs, tmp_path) == before, f"{case.name} wrote or changed files"
