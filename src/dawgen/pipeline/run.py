"""``dawgen run``: every task and seed through stage 1 (tune generators), stage 2 (generate) and stage 3
(prompt-tune and evaluate each method), with every stage's output cached in the run folder.

A stage's folder is named by a key of everything it depends on (models, data, its options, the key of
the stage before it), so a rerun finds finished stages and skips them, a killed stage resumes from its
own checkpoint or part files, and a changed setting reruns only the stages that depend on it::

    RUN/manifest.json  RUN/results.json  RUN/results.md
    RUN/<task>/seed-<s>/generator-<variant>-<key>/    (stage 1: generator/, metrics, plot, result.json)
    RUN/<task>/seed-<s>/synthetic-<variant>-<key>/    (stage 2: synthetic.jsonl, summary, quality)
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
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.data.sources import load_fewshot, load_test
from dawgen.data.synthetic import load_synthetic
from dawgen.evaluation.tables import results_table
from dawgen.generator.config import Variant
from dawgen.models.loading import load_model
from dawgen.pipeline.config import RunConfig
from dawgen.pipeline.manifest import Manifest
from dawgen.pipeline.methods import Method, MethodKind
from dawgen.progress import console
from dawgen.synthesis.writer import summary_path
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json, atomic_write_text


def stage_key(*parts: Any) -> str:
    """A short hash of what a stage depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class Synthetic:
    """Stage 2's output for one generator variant."""

    path: Path
    key: str
    generator: Path


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

    def timed(self, stage: str, name: str, folder: Path, key: str, done: Path, work: Callable[[], Any]) -> Any:
        """Run ``work`` (which returns at once when ``done`` exists), recording its wall time when it ran."""
        cached = done.exists() and self.manifest.has(folder)
        label = f"{self.task.name} seed {self.seed}: {stage} {name}"
        console.print(f"[bold]{label}[/] " + ("(cached)" if cached else f"-> {folder.name}"), soft_wrap=True)
        started = time.perf_counter()
        outcome = work()
        if not cached:
            self.manifest.record(stage, self.task.name, self.seed, name, folder, key, time.perf_counter() - started)
        return outcome

    # -- stage 1 -------------------------------------------------------------------------------
    def generator(self, variant: Variant) -> tuple[Path, str]:
        cfg = self.config
        gen_config = cfg.generator_config(variant, self.seed)
        key = stage_key(cfg.generator_model, self.data_key, to_dict(gen_config))
        folder = self.folder / f"generator-{variant.value}-{key}"

        def work() -> None:
            from dawgen.generator.run import tune_generator

            loaded = load_model(cfg.generator_model, trust_remote_code=cfg.trust_remote_code)
            train, dev = _kshot(cfg, self.task, self.seed)
            tune_generator(loaded, self.task, train, dev, config=gen_config, out_dir=folder,
                           show_progress=self.show_progress)  # fmt: skip

        self.timed("generator", variant.value, folder, key, folder / RESULT_FILE, work)
        return folder, key

    # -- stage 2 -------------------------------------------------------------------------------
    def synthetic(self, variant: Variant) -> Synthetic:
        cfg = self.config
        generator, generator_key = self.generator(variant)
        gen_config = cfg.generation_config(self.seed)
        options = {k: v for k, v in to_dict(gen_config).items() if k != "device"}
        pool = cfg.pool_source(self.task)
        key = stage_key(generator_key, options, pool)
        folder = self.folder / f"synthetic-{variant.value}-{key}"
        path = folder / SYNTHETIC_FILE

        def work() -> None:
            from dawgen.synthesis.generate import generate_synthetic
            from dawgen.synthesis.quality import inspect_synthetic

            generate_synthetic(generator / GENERATOR_DIR, path, gen_config, pool=pool, task=self.task,
                               show_progress=self.show_progress)  # fmt: skip
            if cfg.quality and not (folder / QUALITY_REPORT).exists():
                inspect_synthetic(path, cfg.data, task=self.task, seed=self.seed, k=cfg.k, out=folder)

        done = folder / QUALITY_REPORT if cfg.quality else summary_path(path)
        self.timed("synthesis", variant.value, folder, key, done, work)
        return Synthetic(path, key, generator)

    # -- stage 3 -------------------------------------------------------------------------------
    def method(self, method: Method, synthetic: Synthetic | None) -> dict[str, Any]:
        cfg = self.config
        test = cfg.test_file(self.task)
        if method.kind is MethodKind.UNTRAINED:
            settings = cfg.untrained_config(method.name)  # in-context's demonstrations per label; zero-shot: None
            options = () if settings is None else (to_dict(settings),)
            key = stage_key(cfg.classifier_model, self.data_key, test, method.name, *options)
            folder = self.folder / f"{method.name}-{key}"
            evaluate = partial(self.evaluate, method, settings, test, folder)
            result = self.timed("evaluation", method.name, folder, key, folder / RESULT_FILE,
                                lambda: _saved_or(folder, evaluate))  # fmt: skip
        elif method.kind is MethodKind.PROMPT_TUNING:
            tune_config = cfg.classifier_config(method, self.seed)
            syn_key = synthetic.key if synthetic else None
            key = stage_key(cfg.classifier_model, self.data_key, test, to_dict(tune_config), syn_key)
            folder = self.folder / f"{method.name}-{key}"
            result = self.timed("classifier", method.name, folder, key, folder / RESULT_FILE,
                                lambda: self.prompt_tune(tune_config, test, synthetic, folder))  # fmt: skip
        else:
            settings = cfg.baseline_config(method.name, self.task, self.seed)
            key = stage_key(cfg.classifier_model, self.data_key, test, method.name, to_dict(settings))
            folder = self.folder / f"{method.name}-{key}"
            result = self.timed("baseline", method.name, folder, key, folder / RESULT_FILE,
                                lambda: self.baseline(method.name, settings, test, folder))  # fmt: skip
        return self.record(method, result, folder, synthetic)

    def evaluate(self, method: Method, settings: Any, test: str, folder: Path) -> dict[str, Any]:
        """An untrained method (zero-shot, in-context) of the frozen classifier on this task and seed."""
        from dawgen.classifier.evaluate import evaluate

        cfg = self.config
        loaded = load_model(cfg.classifier_model, trust_remote_code=cfg.trust_remote_code)
        train, _ = _kshot(cfg, self.task, self.seed)
        per_label = getattr(settings, "demonstrations_per_label", None)
        return evaluate(loaded, self.task, load_test(self.task, test), method=method.name, train=train, seed=self.seed,
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
                           config=tune_config, out_dir=folder, show_progress=self.show_progress).result  # fmt: skip

    def baseline(self, name: str, settings: Any, test: str, folder: Path) -> dict[str, Any]:
        """A baseline of ``dawgen.baselines`` on this task and seed (a finished run is read back)."""
        from dawgen.baselines import BASELINES

        baseline, cfg = BASELINES[name], self.config
        loaded = None
        if baseline.uses_classifier:
            loaded = load_model(cfg.classifier_model, trust_remote_code=cfg.trust_remote_code)
        train, dev = _kshot(cfg, self.task, self.seed)
        test_examples = load_test(self.task, test)
        return baseline(loaded, self.task, train, dev, test_examples, settings,
                        folder, self.show_progress)  # fmt: skip

    def record(self, method: Method, result: dict[str, Any], folder: Path, synthetic: Synthetic | None) -> dict:
        """The line of results.json for one method of this task and seed."""
        relative = self.manifest.relative
        return {
            "task": self.task.name, "seed": self.seed, "method": method.name, "test": result["test"],
            "dev": result.get("dev"), "folder": relative(folder), "conflict_rate": result.get("conflict_rate"),
            "trainable_parameters": result.get("trainable_parameters"),
            "generator": relative(synthetic.generator) if synthetic else None,
            "synthetic": relative(synthetic.path) if synthetic else None,
        }  # fmt: skip


def _saved_or(folder: Path, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = folder / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else work()


def run_pipeline(config: RunConfig, show_progress: bool = True) -> list[dict[str, Any]]:
    """Every task x seed x method of ``config``; writes the run folder and returns the results records."""
    for task in config.specs():  # missing or bad data fails now, before the run folder exists
        load_test(task, config.test_file(task))
        for seed in config.seeds:
            _kshot(config, task, seed)
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
            synthetic = {variant: run.synthetic(variant) for variant in config.variants()}
            for method in config.parsed_methods():
                records.append(run.method(method, synthetic.get(method.variant)))
                write_results(out, config, records)  # a stopped run still shows what it finished
    return records


def _kshot(config: RunConfig, task: TaskSpec, seed: int) -> tuple[list, list]:
    split = load_fewshot(task, config.data, seed=seed, k=config.k)
    return split.train, split.dev


def write_results(out: Path, config: RunConfig, records: list[dict[str, Any]]) -> None:
    """``results.json`` (every record) and ``results.md`` (mean (std) over seeds), rewritten atomically."""
    tasks = [task.name for task in config.specs()]
    atomic_write_json(out / RESULTS_FILE, {"tasks": tasks, "seeds": config.seeds, "methods": config.methods,
                                           "records": records})  # fmt: skip
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        cells.setdefault((record["method"], record["task"]), []).append(record)
    seeds = ", ".join(map(str, config.seeds))
    lines = [f"Test accuracy in % (F1 where the task reports it), mean (std) over seeds {seeds}.", ""]
    atomic_write_text(out / RESULTS_TABLE, "\n".join(lines + results_table(cells, config.methods, tasks)) + "\n")
