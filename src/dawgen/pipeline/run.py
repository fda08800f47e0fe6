"""``dawgen run``: every task and seed through stage 1 (tune generators), stage 2 (generate) and stage 3
(prompt-tune and evaluate each method), with every stage's output cached in the run folder.

A stage's folder is named by a key of everything it depends on (models, data, its options, the key of
the stage before it, and the precision its ``precision`` setting resolves to on this machine), so a rerun
finds finished stages and skips them, a killed stage resumes from its own checkpoint or part files, a
changed setting reruns only the stages that depend on it, and a run folder moved to a machine where
"auto" resolves otherwise (e.g. a CPU without native bf16) runs the stages again rather than mixing
precisions::

    RUN/manifest.json  RUN/results.json  RUN/results.md
    RUN/<task>/seed-<s>/generator-<variant>-<key>/    (stage 1: generator/, metrics, plot, result.json)
    RUN/<task>/seed-<s>/synthetic-<variant>-<key>/    (stage 2: synthetic.jsonl, summary, quality)
    RUN/<task>/seed-<s>/oracle-<key>/                 (the oracle's gold-labelled pool sample, read as stage 2)
    RUN/<task>/seed-<s>/<method>-<key>/               (stage 3: adapter/, metrics, plot, result.json)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from dawgen.config import ConfigError, to_dict
from dawgen.constants import GENERATOR_DIR, QUALITY_REPORT, RESULT_FILE, RESULTS_FILE, RESULTS_TABLE, SYNTHETIC_FILE
from dawgen.data.fingerprint import content_key, inputs_fingerprint
from dawgen.data.oracle import ORACLE, ORACLE_LEGEND, SAMPLING_VERSION
from dawgen.data.sources import load_fewshot, load_labelled, load_test
from dawgen.data.synthetic import load_synthetic
from dawgen.evaluation.tables import CELL_LEGEND, precision_lines, results_table
from dawgen.generator.config import Variant
from dawgen.models.inference import decoding_precision
from dawgen.models.loading import load_model
from dawgen.models.precision import pick_device, resolved_precision
from dawgen.pipeline.config import RunConfig
from dawgen.pipeline.manifest import Manifest
from dawgen.pipeline.methods import Method, MethodKind, parse_method
from dawgen.progress import console
from dawgen.synthesis.writer import summary_path
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json, atomic_write_text


def stage_key(*parts: Any) -> str:
    """A short hash of what a stage depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def stage_precision(settings: Any) -> str:
    """What a stage's ``precision`` setting ("auto" by default) resolves to on its device here, by name
    ("fp32", "bf16-autocast"); settings without one (SetFit) run in fp32."""
    return resolved_precision(getattr(settings, "precision", "fp32"), getattr(settings, "device", "auto"))


@dataclass
class Synthetic:
    """Stage 2's output for one generator variant (or the oracle's gold-labelled sample: no generator)."""

    path: Path
    key: str
    generator: Path | None


@dataclass
class SeedRun:
    """One task and seed of a run: where its stages go and what their keys start from."""

    config: RunConfig
    task: TaskSpec
    seed: int
    folder: Path
    data_key: str
    manifest: Manifest
    show_progress: bool

    def timed(
        self, stage: str, name: str, folder: Path, key: str, done: Path, work: Callable[[], Any], precision: str
    ) -> Any:
        """Run ``work`` (which returns at once when ``done`` exists), recording its wall time (and the
        ``precision`` it ran in: "fp32", "bf16-autocast"; stage 2's decoding also "bf16" weights or
        "int8-dynamic") when it ran."""
        cached = done.exists() and self.manifest.has(folder)
        label = f"{self.task.name} seed {self.seed}: {stage} {name}"
        console.print(f"[bold]{label}[/] " + ("(cached)" if cached else f"-> {folder.name}"), soft_wrap=True)
        started = time.perf_counter()
        outcome = work()
        if not cached:
            seconds = time.perf_counter() - started
            self.manifest.record(stage, self.task.name, self.seed, name, folder, key, seconds, precision)
        return outcome

    # -- stage 1 -------------------------------------------------------------------------------
    def generator(self, variant: Variant) -> tuple[Path, str]:
        cfg = self.config
        gen_config = cfg.generator_config(variant, self.seed)
        precision = stage_precision(gen_config)
        key = stage_key(cfg.generator_model, self.data_key, to_dict(gen_config), precision)
        folder = self.folder / f"generator-{variant.value}-{key}"

        def work() -> None:
            from dawgen.generator.run import tune_generator

            loaded = load_model(cfg.generator_model, trust_remote_code=cfg.trust_remote_code)
            train, dev = _kshot(cfg, self.task, self.seed)
            tune_generator(loaded, self.task, train, dev, config=gen_config, out_dir=folder,
                           show_progress=self.show_progress, owns_model=True)  # fmt: skip

        self.timed("generator", variant.value, folder, key, folder / RESULT_FILE, work, precision)
        return folder, key

    # -- stage 2 -------------------------------------------------------------------------------
    def synthetic(self, variant: Variant) -> Synthetic:
        cfg = self.config
        generator, generator_key = self.generator(variant)
        gen_config = cfg.generation_config(self.seed, self.task)
        options = {k: v for k, v in to_dict(gen_config).items() if k != "device"}
        pool = cfg.pool_source(self.task)
        precision = stage_precision(gen_config)
        classifier = None  # the stage-3 classifier of consistency_filter: classifier, if any
        if gen_config.consistency_classifier:
            from dawgen.classifier.predictor import SavedClassifier

            classifier = SavedClassifier(gen_config.consistency_classifier, precision=gen_config.precision)
        extra = () if classifier is None else (classifier.identity,)  # what it holds, beside its path
        key = stage_key(generator_key, options, pool, precision, *extra)
        folder = self.folder / f"synthetic-{variant.value}-{key}"
        path = folder / SYNTHETIC_FILE

        def work() -> None:
            from dawgen.synthesis.generate import generate_synthetic
            from dawgen.synthesis.quality import inspect_synthetic

            train = _kshot(cfg, self.task, self.seed)[0]  # the judge and relatedness floor learn from it alone
            generate_synthetic(generator / GENERATOR_DIR, path, gen_config, pool=pool, task=self.task, train=train,
                               classifier=classifier, show_progress=self.show_progress)  # fmt: skip
            if cfg.quality and not (folder / QUALITY_REPORT).exists():
                inspect_synthetic(path, cfg.data, task=self.task, seed=self.seed, k=cfg.k, out=folder)

        done = folder / QUALITY_REPORT if cfg.quality else summary_path(path)
        decoding = decoding_precision(gen_config.precision, pick_device(gen_config.device), gen_config.quantize)
        self.timed("synthesis", variant.value, folder, key, done, work, decoding)
        return Synthetic(path, key, generator)

    # -- the oracle: stage 2 with gold pool labels ----------------------------------------------
    def oracle(self) -> Synthetic:
        """The oracle's "synthetic" set: ``generation.per_label`` rows of every label drawn with the seed from
        the task's pool **with their gold labels**, every row of any k-shot split of the task removed."""
        from dawgen.data.oracle import kshot_folders, kshot_rows, sample_oracle, write_oracle_set

        cfg = self.config
        per_label = cfg.generation_config(self.seed).per_label
        pool_file = cfg.oracle_pool(self.task)
        pool = load_labelled(self.task, pool_file)
        folders = kshot_folders(self.task, cfg.data)
        exclude = kshot_rows(self.task, folders)
        for seed in cfg.seeds:  # the run's own splits, also when they are sampled from a file
            exclude += [e for split in _kshot(cfg, self.task, seed) for e in split]
        fingerprint = inputs_fingerprint("", self.task, pool, exclude)
        key = stage_key(SAMPLING_VERSION, self.data_key, fingerprint, per_label, self.seed)
        folder = self.folder / f"oracle-{key}"
        path = folder / SYNTHETIC_FILE

        def work() -> None:
            from dawgen.synthesis.quality import inspect_synthetic

            if not summary_path(path).exists():
                oracle = sample_oracle(self.task, pool, exclude, per_label, self.seed)
                if oracle.summary["short"]:
                    console.print(f"[yellow]{self.task.name}: the pool holds {oracle.summary['per_label']} rows "
                                  f"per label for the oracle, fewer than {per_label}[/]")  # fmt: skip
                write_oracle_set(oracle, path, summary_path(path), pool=pool_file,
                                 kshot_folders=[str(f) for f in folders])  # fmt: skip
            if cfg.quality and not (folder / QUALITY_REPORT).exists():
                inspect_synthetic(path, cfg.data, task=self.task, seed=self.seed, k=cfg.k, out=folder)

        done = folder / QUALITY_REPORT if cfg.quality else summary_path(path)
        self.timed("oracle", "gold pool", folder, key, done, work, "fp32")  # no model; MiniLM quality in fp32
        return Synthetic(path, key, None)

    # -- stage 3 -------------------------------------------------------------------------------
    def method(self, method: Method, synthetic: Synthetic | None) -> dict[str, Any]:
        cfg = self.config
        test = cfg.test_file(self.task)
        if method.kind is MethodKind.UNTRAINED:
            precision = stage_precision(self.untrained_settings())
            settings = cfg.untrained_config(method.name)  # in-context's demonstrations per label; zero-shot: None
            options = () if settings is None else (to_dict(settings),)
            key = stage_key(cfg.classifier_model, self.data_key, test, method.name, *options, precision)
            folder = self.folder / f"{method.name}-{key}"
            evaluate = partial(self.evaluate, method, settings, test, folder)
            result = self.timed("evaluation", method.name, folder, key, folder / RESULT_FILE,
                                lambda: _saved_or(folder, evaluate), precision)  # fmt: skip
        elif method.kind is MethodKind.PROMPT_TUNING:
            tune_config = cfg.classifier_config(method, self.seed)
            syn_key = synthetic.key if synthetic else None
            precision = stage_precision(tune_config)
            key = stage_key(cfg.classifier_model, self.data_key, test, to_dict(tune_config), syn_key, precision)
            folder = self.folder / f"{method.name}-{key}"
            result = self.timed("classifier", method.name, folder, key, folder / RESULT_FILE,
                                lambda: self.prompt_tune(tune_config, test, synthetic, folder), precision)  # fmt: skip
        else:
            settings = cfg.baseline_config(method.name, self.task, self.seed)
            precision = stage_precision(settings)
            parts = [cfg.classifier_model, self.data_key, test, method.name, to_dict(settings), precision]
            if method.needs_synthetic:  # setfit+syn: the synthetic set is an input too
                parts.append(synthetic.key if synthetic else content_key(settings.synthetic_file))
            key = stage_key(*parts)
            folder = self.folder / f"{method.name}-{key}"
            result = self.timed("baseline", method.name, folder, key, folder / RESULT_FILE,
                                lambda: self.baseline(method, settings, test, folder, synthetic),
                                precision)  # fmt: skip
        return self.record(method, result, folder, synthetic)

    def untrained_settings(self) -> Any:
        """The classifier section's options (its ``precision`` and ``device`` are those of the untrained methods)."""
        return self.config.classifier_config(parse_method("pt"), self.seed)

    def evaluate(self, method: Method, settings: Any, test: str, folder: Path) -> dict[str, Any]:
        """An untrained method (zero-shot, in-context: ``settings``, its demonstrations per label) of the frozen
        classifier on this task and seed, in the classifier section's precision and on its device."""
        from dawgen.classifier.evaluate import evaluate

        cfg, classifier = self.config, self.untrained_settings()
        loaded = load_model(cfg.classifier_model, trust_remote_code=cfg.trust_remote_code)
        train, _ = _kshot(cfg, self.task, self.seed)
        per_label = getattr(settings, "demonstrations_per_label", None)
        return evaluate(loaded, self.task, load_test(self.task, test), method=method.name, train=train, seed=self.seed,
                        precision=classifier.precision, device=classifier.device,
                        demonstrations_per_label=per_label, out_dir=folder,
                        show_progress=self.show_progress)  # fmt: skip

    def prompt_tune(self, tune_config: Any, test: str, synthetic: Synthetic | None, folder: Path) -> dict[str, Any]:
        """Stage 3: prompt tuning on the real k-shot split (and the synthetic set, if any) of this task and seed."""
        from dawgen.classifier.run import prompt_tune

        cfg = self.config
        loaded = load_model(cfg.classifier_model, trust_remote_code=cfg.trust_remote_code)
        train, dev = _kshot(cfg, self.task, self.seed)
        syn = load_synthetic(self.task, synthetic.path) if synthetic else None
        return prompt_tune(loaded, self.task, train, dev, synthetic=syn, test=load_test(self.task, test),
                           config=tune_config, out_dir=folder, show_progress=self.show_progress,
                           owns_model=True).result  # fmt: skip

    def baseline(
        self, method: Method, settings: Any, test: str, folder: Path, synthetic: Synthetic | None = None
    ) -> dict[str, Any]:
        """A baseline of ``dawgen.baselines`` on this task and seed (a finished run is read back); one that
        uses a synthetic set gets the run's (``synthetic``), unless its settings name a ``synthetic_file``."""
        from dawgen.baselines import BASELINES

        baseline, cfg = BASELINES[method.baseline or method.name], self.config
        extra = {"synthetic": synthetic.path if synthetic else None} if baseline.uses_synthetic else {}
        loaded = None
        if baseline.uses_classifier:
            loaded = load_model(cfg.classifier_model, trust_remote_code=cfg.trust_remote_code)
        train, dev = _kshot(cfg, self.task, self.seed)
        test_examples = load_test(self.task, test)
        return baseline(loaded, self.task, train, dev, test_examples, settings,
                        folder, self.show_progress, **extra)  # fmt: skip

    def record(self, method: Method, result: dict[str, Any], folder: Path, synthetic: Synthetic | None) -> dict:
        """The line of results.json for one method of this task and seed. ``compute`` is the precision and
        machine kind of the run behind the scores (``precision_record``; None for a result written before
        results recorded it), ``synthetic_compute`` that of the generation of its synthetic set."""
        relative = self.manifest.relative
        external = result.get("synthetic") if isinstance(result.get("synthetic"), dict) else None
        return {
            "task": self.task.name, "seed": self.seed, "method": method.name, "test": result["test"],
            "dev": result.get("dev"), "folder": relative(folder), "conflict_rate": result.get("conflict_rate"),
            "trainable_parameters": result.get("trainable_parameters"),
            "compute": result.get("compute"),
            "generator": relative(synthetic.generator) if synthetic and synthetic.generator else None,
            "synthetic": relative(synthetic.path) if synthetic else external["path"] if external else None,
            "synthetic_compute": _summary_compute(synthetic.path) if synthetic else None,
        }  # fmt: skip


def _summary_compute(synthetic: Path) -> dict[str, Any] | None:
    """The ``compute`` record of a synthetic set's generation summary (None where it has none)."""
    try:
        return json.loads(summary_path(synthetic).read_text(encoding="utf-8")).get("compute")
    except (OSError, ValueError, AttributeError):
        return None


def _saved_or(folder: Path, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = folder / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else work()


def run_pipeline(config: RunConfig, show_progress: bool = True) -> list[dict[str, Any]]:
    """Every task x seed x method of ``config``; writes the run folder and returns the results records."""
    for task in config.specs():  # missing or bad data fails now, before the run folder exists
        load_test(task, config.test_file(task))
        for seed in config.seeds:
            _kshot(config, task, seed)
        if config.uses_oracle():
            config.oracle_pool(task)
        _check_synthetic_files(config, task)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a run folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(out, to_dict(config))
    manifest.save()
    records = []
    for task in config.specs():
        for seed in config.seeds:
            data_key = inputs_fingerprint("", task, *_kshot(config, task, seed))
            run = SeedRun(config, task, seed, out / task.name / f"seed-{seed}", data_key, manifest, show_progress)
            synthetic = {variant.value: run.synthetic(variant) for variant in config.variants()}
            if config.uses_oracle():
                synthetic[ORACLE] = run.oracle()
            for method in config.parsed_methods():
                own = None if config.external_synthetic(method) else synthetic.get(method.source)
                records.append(run.method(method, own))
                write_results(out, config, records)  # a stopped run still shows what it finished
    return records


def _check_synthetic_files(config: RunConfig, task: TaskSpec) -> None:
    """Every ``synthetic_file`` of a baseline method (``setfit+syn``) exists, for every seed."""
    for method in config.parsed_methods():
        if config.external_synthetic(method):
            for seed in config.seeds:
                path = config.baseline_config(method.name, task, seed).synthetic_file
                if not Path(path).exists():
                    raise ConfigError(f"baselines.{method.name}: synthetic_file {path} (task {task.name}, "
                                      f"seed {seed}) not found")  # fmt: skip


def _kshot(config: RunConfig, task: TaskSpec, seed: int) -> tuple[list, list]:
    split = load_fewshot(task, config.data, seed=seed, k=config.k)
    return split.train, split.dev


def write_results(out: Path, config: RunConfig, records: list[dict[str, Any]]) -> None:
    """``results.json`` (every record) and ``results.md`` (mean (std) over seeds, then the precision the
    records ran in: one line, or one per precision where they differ), rewritten atomically."""
    tasks = [task.name for task in config.specs()]
    atomic_write_json(out / RESULTS_FILE, {"tasks": tasks, "seeds": config.seeds, "methods": config.methods,
                                           "records": records})  # fmt: skip
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        cells.setdefault((record["method"], record["task"]), []).append(record)
    seeds = ", ".join(map(str, config.seeds))
    lines = [f"Seeds {seeds}. {CELL_LEGEND}", ""]
    if config.uses_oracle():
        lines += [ORACLE_LEGEND, ""]
    lines += [*results_table(cells, config.methods, tasks), "", *precision_lines(records)]
    atomic_write_text(out / RESULTS_TABLE, "\n".join(lines) + "\n")
