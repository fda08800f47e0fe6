"""The settings of a whole run: tasks, data, seeds, models, methods, and each stage's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.evaluate import EvalMethod
from dawgen.classifier.in_context import InContextConfig
from dawgen.config import ConfigError, config_from_dict
from dawgen.data.oracle import ORACLE, OracleConfig, find_labelled_pool
from dawgen.generator.config import GeneratorConfig, Variant
from dawgen.models.loading import DEFAULT_MODEL
from dawgen.pipeline.methods import Method, MethodKind, parse_method
from dawgen.synthesis.config import GenerationConfig
from dawgen.tasks.registry import get_task
from dawgen.tasks.schema import TaskSpec


def _seed(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"run config: 'seeds' must be integers, got {value!r}")


# options the run sets itself, per seed and per method
_PER_RUN = {"generator": ("seed", "variant"), "generation": ("seed",), "classifier": ("seed", "combine", "surgery")}


@dataclass
class RunConfig:
    """One YAML file of ``dawgen run``.

    ``test`` and ``pool`` may hold ``{task}`` (e.g. ``data/{task}/test.tsv``); left empty, a task's test
    file is ``<data>/<task>/<test_file of the task table>`` and its pool is the data root's (the demo
    task brings its own). ``test_files`` names a task's test set outright (a file or ``hf:NAME``).
    ``generator``, ``generation``, ``classifier`` and ``baselines`` (one mapping per baseline method,
    and ``in-context: {demonstrations_per_label: N}``, default k) hold the options of stages 1, 2 and 3
    (see ``dawgen tune-generator --help`` etc.); a ``setfit+...+syn``
    method takes the ``setfit`` options, then its own (e.g. ``setfit+syn: {synthetic_per_label: 200}``; with
    ``synthetic_file`` it trains on that file, ``{task}``/``{seed}``/``{k}`` filled in, and needs no generator).
    ``oracle`` holds the options of the ``oracle+<strategy>`` methods, which train on pool rows with their
    **gold labels** (``dawgen.data.oracle.OracleConfig``: ``pool``, the labelled pool; by default the run's pool).
    """

    tasks: list[str] = field(default_factory=list)
    data: str = ""
    out: str = "runs/dawgen"
    seeds: list[int] = field(default_factory=lambda: [13])
    k: int = 16
    methods: list[str] = field(default_factory=lambda: ["pt", "ours"])
    generator_model: str = DEFAULT_MODEL
    classifier_model: str = DEFAULT_MODEL
    test: str | None = None
    test_files: dict[str, str] = field(default_factory=dict)  # per task, over ``test``
    pool: str | None = None
    quality: bool = True  # compare each synthetic set with the real data (MiniLM embeddings)
    trust_remote_code: bool = False
    generator: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    oracle: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tasks", "seeds", "methods"):
            value = getattr(self, name)
            if isinstance(value, str | int):  # one value given where a list was expected
                value = [value]
            if not isinstance(value, list) or not value:
                raise ConfigError(f"run config: '{name}' must be a non-empty list, got {value!r}")
            setattr(self, name, value)
        self.seeds = [_seed(seed) for seed in self.seeds]
        for name in ("tasks", "methods"):
            bad = [item for item in getattr(self, name) if not isinstance(item, str)]
            if bad:
                raise ConfigError(f"run config: '{name}' must be a list of names, got {bad[0]!r} in it")
        for name in (*_PER_RUN, "baselines", "test_files"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, dict):
                raise ConfigError(f"run config: '{name}' must be a mapping of options, got {value!r}")
        for name, options in self.baselines.items():
            if options is None:
                self.baselines[name] = {}
            elif not isinstance(options, dict):
                raise ConfigError(f"run config: 'baselines.{name}' must be a mapping of options, got {options!r}")
        if not self.data:
            raise ConfigError("run config: 'data' is required (a data root, a k-shot folder or a training file)")
        for stage, fixed in _PER_RUN.items():
            given = sorted(set(getattr(self, stage)) & set(fixed))
            if given:
                raise ConfigError(f"run config: '{stage}' must not set {given}: the run sets them per seed/method")
        self.parsed_methods()  # unknown names fail now, not hours into the run
        self._check_baseline_names()
        self.oracle_config()  # kept when no oracle method runs, as unused baseline options are
        self.specs()
        for seed in self.seeds:
            self.generator_config(Variant.DAWGEN, seed)
            self.generation_config(seed)
            self.classifier_config(parse_method("pt"), seed)
            trained = {m.name for m in self.parsed_methods() if m.kind is MethodKind.BASELINE}
            for name in sorted(trained | {n for n in self.baselines if parse_method(n).kind is MethodKind.BASELINE}):
                for task in self.specs():
                    self.baseline_config(name, task, seed)
            for method in self.parsed_methods():
                if method.kind is MethodKind.UNTRAINED:
                    self.untrained_config(method.name)

    def specs(self) -> list[TaskSpec]:
        return [get_task(task) for task in self.tasks]

    def parsed_methods(self) -> list[Method]:
        return [parse_method(name) for name in self.methods]

    def variants(self) -> list[Variant]:
        """The generators the methods need, in a fixed order (none for a method given a ``synthetic_file``)."""
        methods = self.parsed_methods()
        needed = {m.variant for m in methods if m.variant is not None and not self.external_synthetic(m)}
        return [v for v in Variant if v in needed]

    def _check_baseline_names(self) -> None:
        """Every ``baselines`` entry names a baseline (or untrained) method; the options of one the run does not
        train are kept unused, so one config serves ``--methods`` subsets of it."""
        for name in self.baselines:
            if parse_method(name).kind not in (MethodKind.BASELINE, MethodKind.UNTRAINED):
                raise ConfigError(f"run config: 'baselines.{name}': {name} is not a baseline method")

    def baseline_options(self, name: str) -> dict[str, Any]:
        """The options of baseline method ``name``: those of the baseline it takes options from, then its own."""
        from dawgen.baselines import BASELINES

        inherited = BASELINES[parse_method(name).baseline or name].options_from
        return {**(self.baselines.get(inherited, {}) if inherited else {}), **self.baselines.get(name, {})}

    def external_synthetic(self, method: Method) -> bool:
        """Whether baseline ``method`` trains on a ``synthetic_file`` of its options rather than the run's set."""
        return method.kind is MethodKind.BASELINE and bool(self.baseline_options(method.name).get("synthetic_file"))

    def uses_oracle(self) -> bool:
        return any(m.oracle for m in self.parsed_methods())

    def oracle_config(self) -> OracleConfig:
        return config_from_dict(OracleConfig, self.oracle, "run config: oracle")

    def oracle_pool(self, task: TaskSpec) -> str:
        """The labelled pool the oracle methods of ``task`` sample from, with its gold labels: ``oracle.pool``
        (``{task}`` replaced), else the run's pool (``pool_source``)."""
        pool = self.oracle_config().pool
        spec = pool.format(task=task.name) if pool else self.pool_source(task)
        if spec is None:
            raise ConfigError(f"task {task.name}: the {ORACLE} methods need a labelled pool; set oracle.pool")
        return find_labelled_pool(task, spec)

    def generator_config(self, variant: Variant, seed: int) -> GeneratorConfig:
        options = {**self.generator, "variant": variant, "seed": seed}
        return config_from_dict(GeneratorConfig, options, "run config: generator")

    def generation_config(self, seed: int, task: TaskSpec | None = None) -> GenerationConfig:
        """Stage 2's settings for ``seed``; with ``task``, ``{task}``, ``{seed}`` and ``{k}`` in
        ``consistency_classifier`` (a stage-3 classifier folder) are filled in."""
        options = {**self.generation, "seed": seed}
        folder = options.get("consistency_classifier")
        if task is not None and isinstance(folder, str):
            options["consistency_classifier"] = folder.format(task=task.name, seed=seed, k=self.k)
        return config_from_dict(GenerationConfig, options, "run config: generation")

    def classifier_config(self, method: Method, seed: int) -> PromptTuneConfig:
        options = {**self.classifier, "seed": seed, "combine": method.combine, "surgery": method.surgery}
        return config_from_dict(PromptTuneConfig, options, "run config: classifier")

    def untrained_config(self, name: str) -> InContextConfig | None:
        """The settings of an untrained method: in-context's (``baselines: {in-context:
        {demonstrations_per_label: N}}``, default k); zero-shot takes none (None)."""
        options = self.baselines.get(name) or {}
        if name == EvalMethod.IN_CONTEXT.value:
            config = config_from_dict(InContextConfig, options, f"run config: baselines.{name}")
            if config.demonstrations_per_label is None:
                config.demonstrations_per_label = self.k
            return config
        if options:
            raise ConfigError(f"run config: baselines.{name}: {name} takes no options, got {sorted(options)}")
        return None

    def baseline_config(self, name: str, task: TaskSpec, seed: int) -> Any:
        """The settings of baseline method ``name``; ``{task}``, ``{seed}`` and ``{k}`` in its text options become
        the task's name, the seed and k (e.g. ``ppt: {pool: data/{task}/pool/train.json}``)."""
        from dawgen.baselines import BASELINES

        fill = {"task": task.name, "seed": seed, "k": self.k}
        options = {k: v.format(**fill) if isinstance(v, str) else v for k, v in self.baseline_options(name).items()}
        baseline = BASELINES[parse_method(name).baseline or name]
        return config_from_dict(baseline.config, {**options, "seed": seed}, f"run config: baselines.{name}")

    def test_file(self, task: TaskSpec) -> str:
        if task.name in self.test_files:
            return self.test_files[task.name]
        if self.test:
            return self.test.format(task=task.name)
        root = Path(self.data) / task.name
        if not task.test_file or not (root / task.test_file).is_file():
            where = root / (task.test_file or "?")
            raise ConfigError(f"task {task.name}: no test file at {where}; set 'test' or 'test_files'")
        return str(root / task.test_file)

    def pool_source(self, task: TaskSpec) -> str | None:
        """The first-sentence pool of a pair task (None: the generator's task brings its own)."""
        if self.pool:
            return self.pool.format(task=task.name)
        return self.data if (Path(self.data) / task.name).is_dir() else None
