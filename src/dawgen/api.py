"""The Python API: the same entry points as the CLI, taking names and paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.evaluate import EvalMethod, check_method_inputs, eval_method
from dawgen.classifier.evaluate import evaluate as _evaluate
from dawgen.classifier.in_context import check_demonstrations_per_label
from dawgen.classifier.predictor import SavedClassifier
from dawgen.classifier.run import TuneOutcome
from dawgen.classifier.run import prompt_tune as _prompt_tune
from dawgen.config import ConfigError, config_from_dict, load_yaml
from dawgen.data.example import Example
from dawgen.data.sources import DEMO_TASK_FILE, demo_dir, load_fewshot, load_test
from dawgen.data.synthetic import load_synthetic
from dawgen.generator.config import GeneratorConfig
from dawgen.generator.run import GeneratorOutcome
from dawgen.generator.run import tune_generator as _tune_generator
from dawgen.models.loading import DEFAULT_MODEL, load_model
from dawgen.synthesis.config import GenerationConfig
from dawgen.synthesis.generate import GenerationOutcome
from dawgen.synthesis.generate import generate_synthetic as _generate_synthetic
from dawgen.synthesis.judge import judge_synthetic as _judge_synthetic
from dawgen.synthesis.quality import inspect_synthetic as _inspect_synthetic
from dawgen.tasks.registry import get_task
from dawgen.tasks.schema import TaskSpec

if TYPE_CHECKING:  # imported where used: the pipeline sits below this face
    from dawgen.pipeline import RunConfig
    from dawgen.synthesis.export import ExportOutcome


def _check_out(out: str | Path | None, *, folder: bool) -> None:
    """An output path that cannot be written as asked (a file where a folder goes, or the reverse) fails
    before any work is done."""
    if out is None:
        return
    path = Path(out)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: is a file; give a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file name")


def prompt_tune(
    *,
    task: str | TaskSpec,
    data: str | Path,
    model: str = DEFAULT_MODEL,
    test: str | Path | None = None,
    synthetic: str | Path | None = None,
    drop_copies: bool = True,
    out: str | Path | None = None,
    k: int = 16,
    trust_remote_code: bool = False,
    tune_config: PromptTuneConfig | None = None,
    show_progress: bool = True,
) -> TuneOutcome:
    """Prompt-tune ``model`` on the k-shot split in ``data`` (seed = ``tune_config.seed``),
    with a ``synthetic`` set (verbatim copies dropped) combined as ``tune_config.combine`` says."""
    _check_out(out, folder=True)
    spec = get_task(task)
    config = tune_config or PromptTuneConfig()
    split = load_fewshot(spec, data, seed=config.seed, k=k)
    test_examples = load_test(spec, test) if test else []
    syn = load_synthetic(spec, synthetic, drop_copies=drop_copies) if synthetic else None
    loaded = load_model(model, trust_remote_code=trust_remote_code)
    return _prompt_tune(
        loaded, spec, split.train, split.dev, synthetic=syn, test=test_examples, config=config, out_dir=out,
        show_progress=show_progress, owns_model=True,
    )  # fmt: skip


def evaluate(
    *,
    task: str | TaskSpec,
    test: str | Path,
    model: str = DEFAULT_MODEL,
    method: str | EvalMethod = EvalMethod.ZERO_SHOT,
    adapter: str | Path | None = None,
    data: str | Path | None = None,
    seed: int = 13,
    k: int = 16,
    demonstrations_per_label: int | None = None,
    precision: str = "auto",
    device: str = "auto",
    out: str | Path | None = None,
    trust_remote_code: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate zero-shot, in-context (``demonstrations_per_label`` examples of every label, default
    ``k``, from the k-shot train split of ``data``), or with a tuned PEFT adapter (``adapter``: a soft
    prompt, prefixes or LoRA; ``method`` prompt or adapter). The inputs are checked before the model is loaded."""
    _check_out(out, folder=True)
    spec = get_task(task)
    method = eval_method(method)
    check_method_inputs(method, adapter, data is not None)
    check_demonstrations_per_label(demonstrations_per_label)
    test_examples = load_test(spec, test)
    train = load_fewshot(spec, data, seed=seed, k=k).train if data is not None else []
    loaded = load_model(model, trust_remote_code=trust_remote_code)
    per_label = k if demonstrations_per_label is None else demonstrations_per_label
    return _evaluate(
        loaded, spec, test_examples, method=method, adapter=adapter, train=train,
        demonstrations_per_label=per_label, seed=seed, precision=precision, device=device,
        out_dir=out, show_progress=show_progress,
    )  # fmt: skip


def run(config: RunConfig | dict[str, Any] | str | Path, *, show_progress: bool = True) -> list[dict[str, Any]]:
    """All stages for every task, seed and method of ``config`` (a ``RunConfig``, its options, or a YAML
    file); returns the results records (also in ``<out>/results.json``). Finished stages are skipped."""
    from dawgen.pipeline import RunConfig, run_pipeline

    if isinstance(config, str | Path):
        config = config_from_dict(RunConfig, load_yaml(config), str(config))
    elif isinstance(config, dict):
        config = config_from_dict(RunConfig, config)
    return run_pipeline(config, show_progress=show_progress)


def demo_config(out: str | Path = "runs/demo", precision: str = "auto") -> RunConfig:
    """The offline demo: the shipped dataset, SmolLM2-135M in both roles, a budget for a 2-core CPU, every
    stage in ``precision`` (``auto``: bf16 autocast on a CPU with native bf16, else fp32)."""
    from dawgen.pipeline import RunConfig

    data = demo_dir()
    return RunConfig(
        tasks=[str(data / DEMO_TASK_FILE)], data=str(data), test=str(data / "test.tsv"), out=str(out),
        methods=["pt", "ours"], generator={"epochs": 2, "per_label_batch": 2, "precision": precision},
        # the pool has 200 first sentences and most not_entailment samples run past 32 tokens (about 1 in 10 is
        # kept): first sentences may repeat, and a label may take 20 x 48 attempts to make its 48 samples
        generation={"per_label": 48, "max_new_tokens": 32, "reuse_pool": True, "max_attempts_per_label": 960,
                    "precision": precision},
        classifier={"max_steps": 40, "eval_every": 10, "batch_size": 4, "syn_batch_size": 4, "precision": precision},
    )  # fmt: skip


def demo(out: str | Path = "runs/demo", *, precision: str = "auto", show_progress: bool = True) -> list[dict[str, Any]]:
    """The offline demo (``demo_config``): tune a DawGen generator on the shipped dataset, generate, and
    compare prompt tuning on the real data (``pt``) with ours (real + synthetic, paired, gradient surgery)."""
    return run(demo_config(out, precision), show_progress=show_progress)


def report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``report.html`` into a run folder; returns the Markdown file."""
    from dawgen.reporting import write_report

    return write_report(run_dir)[0]


def tune_generator(
    *,
    task: str | TaskSpec,
    data: str | Path,
    model: str = DEFAULT_MODEL,
    out: str | Path | None = None,
    k: int = 16,
    trust_remote_code: bool = False,
    generator_config: GeneratorConfig | None = None,
    show_progress: bool = True,
) -> GeneratorOutcome:
    """Stage 1: tune per-label soft prompts of the causal LM ``model`` on the k-shot split in ``data``
    (seed = ``generator_config.seed``), as ``generator_config.variant`` says (plain, fewgen, dawgen).
    The tuned generator is ``outcome.generator``, saved under ``out/generator`` when ``out`` is given."""
    _check_out(out, folder=True)
    spec = get_task(task)
    config = generator_config or GeneratorConfig()
    split = load_fewshot(spec, data, seed=config.seed, k=k)
    loaded = load_model(model, trust_remote_code=trust_remote_code)
    return _tune_generator(
        loaded, spec, split.train, split.dev, config=config, out_dir=out, show_progress=show_progress, owns_model=True
    )


def generate_synthetic(
    *,
    generator: str | Path,
    out: str | Path,
    pool: str | Path | None = None,
    pool_column: str | None = None,
    task: str | TaskSpec | None = None,
    model: str | None = None,
    generation_config: GenerationConfig | None = None,
    few_shot: str | Path | Sequence[Example] | None = None,
    k: int = 16,
    show_progress: bool = True,
) -> GenerationOutcome:
    """Stage 2: generate ``generation_config.per_label`` filtered samples per label with the tuned generator
    folder ``generator`` into the JSON Lines file ``out`` (plus ``<stem>.summary.json`` and
    ``<stem>.rejected.jsonl``). Pair tasks take first sentences from ``pool`` (a file, a data root or
    ``hf:NAME``; the demo task has its own). Resumes an interrupted run; under ``accelerate launch`` every
    process takes a share of the batches. ``few_shot``: the k-shot training split the judge and the
    relatedness floor learn from (examples, or a k-shot folder or data root read with the generation seed
    and ``k``); ``consistency_filter: classifier`` loads the stage-3 classifier in ``consistency_classifier``."""
    _check_out(out, folder=False)
    config = generation_config or GenerationConfig()
    folder = config.consistency_classifier  # set exactly when consistency_filter is classifier
    classifier = SavedClassifier(folder, precision=config.precision) if folder else None
    return _generate_synthetic(
        generator, out, config, pool=pool, pool_column=pool_column, task=task, model=model, train=few_shot, k=k,
        classifier=classifier, show_progress=show_progress,
    )  # fmt: skip


def inspect_synthetic(
    synthetic: str | Path,
    *,
    real: str | Path,
    task: str | TaskSpec | None = None,
    seed: int = 13,
    k: int = 16,
    out: str | Path | None = None,
    sample: int = 200,
    embeddings: bool = True,
) -> dict[str, Any]:
    """Quality of a synthetic set (dawgen's or FewGen's) against the k-shot training split in ``real``:
    label balance, copies, distinct-1/2, self-BLEU, lengths and MiniLM embedding similarity; written
    as ``quality.json`` and ``quality.png`` into ``out`` when given."""
    _check_out(out, folder=True)
    return _inspect_synthetic(synthetic, real, task=task, seed=seed, k=k, out=out, sample=sample, embeddings=embeddings)


def judge_synthetic(
    synthetic: list[str | Path], *, reference: str | Path, held_out: str | Path, task: str | TaskSpec,
    out: str | Path | None = None, sample: int | None = None, few_shot: str | Path | None = None, seed: int = 13,
    k: int = 16,
) -> dict[str, Any]:  # fmt: skip
    """Label consistency of synthetic sets: a MiniLM + logistic-regression judge fitted on the labelled
    real ``reference`` pairs (e.g. a task's pool with its gold labels), its accuracy on the real
    ``held_out`` pairs, how often it agrees with each synthetic set's labels, and the held-out accuracy
    of a judge fitted on each set (and on the ``few_shot`` training split); JSON in ``out``."""
    _check_out(out, folder=False)
    return _judge_synthetic(synthetic, reference=reference, held_out=held_out, task=task, out=out, sample=sample,
                            few_shot=few_shot, seed=seed, k=k)  # fmt: skip


def export_synthetic(
    synthetic: str | Path, *, out: str | Path, format: str = "hf", task: str | TaskSpec | None = None,
    push: str | None = None, private: bool = False, token: str | None = None, drop_copies: bool = False,
) -> ExportOutcome:  # fmt: skip
    """Export a synthetic set (dawgen's JSONL with its summary and ``quality.json`` when beside it, FewGen's
    ``gen-train.json``, or an exported folder) into the new folder ``out`` as ``format``: ``hf`` (a typed
    ``datasets.Dataset`` saved with ``save_to_disk``: ``ClassLabel`` labels in the task table's order, the
    scalar metadata columns), ``csv`` (``train.csv``) or ``jsonl`` (``train.jsonl``), with a dataset card
    ``README.md`` and ``provenance.json``: the generator, task, k-shot split and seed, generation options,
    filter counts and quality numbers. ``task`` None: from the summary, else inferred from the path. ``push``:
    also upload to that hub dataset repo. Every check runs before anything is written."""
    from dawgen.synthesis.export import export_synthetic as _export_synthetic

    return _export_synthetic(synthetic, out, fmt=format, task=task, push=push, private=private, token=token,
                             drop_copies=drop_copies)  # fmt: skip
