"""Finding tasks: the built-in table and user YAML files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dawgen.config import read_yaml
from dawgen.data.example import ColumnMap
from dawgen.tasks.schema import Family, GeneratorText, TaskError, TaskSpec

_FIELDS = {
    "name", "description", "labels", "label_words", "columns", "templates", "generator",
    "pair", "f1_positive_label", "kshot_files", "test_file",
}  # fmt: skip
_REQUIRED = {"name", "labels", "label_words", "columns", "templates"}
DEFAULT_KSHOT_FILES = {"train": "train.tsv", "dev": "dev.tsv"}


def _column_value(value: Any) -> Any:
    """YAML reads ``label: 0`` as an int; column names are strings (booleans stay flags)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _mapping(raw: dict[str, Any], key: str, where: str) -> dict[Any, Any]:
    """``raw[key]`` as a mapping (missing or null: empty); anything else is a ``TaskError``."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaskError(f"{where}: field '{key}' must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _kshot_files(raw: dict[str, Any], where: str) -> dict[str, str]:
    """The k-shot file names: ``train.tsv``/``dev.tsv`` unless the task names its own."""
    files = _mapping(raw, "kshot_files", where)
    unknown = sorted(set(files) - set(DEFAULT_KSHOT_FILES))
    if unknown:
        raise TaskError(f"{where}: field 'kshot_files' has unknown key(s) {unknown}; known: train, dev")
    for key, name in files.items():
        if not isinstance(name, str) or not name.strip():
            raise TaskError(f"{where}: field 'kshot_files.{key}' must be a file name, got {name!r}")
    return {**DEFAULT_KSHOT_FILES, **files}


def task_from_dict(raw: dict[str, Any], source: str = "task definition") -> TaskSpec:
    """Build and validate a ``TaskSpec`` from parsed YAML; errors name ``source`` and the field."""
    if not isinstance(raw, dict):
        raise TaskError(f"{source}: a task must be a mapping of fields, got {type(raw).__name__}")
    where = f"{source} (task {raw.get('name', '?')!r})"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise TaskError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    missing = _REQUIRED - set(raw)
    if missing:
        raise TaskError(f"{where}: missing field(s) {sorted(missing)}")
    if not isinstance(raw["labels"], list) or not all(isinstance(x, str | int) for x in raw["labels"]):
        raise TaskError(f"{where}: field 'labels' must be a list of label names, got {raw['labels']!r}")
    labels = tuple(str(label) for label in raw["labels"])
    label_words = _mapping(raw, "label_words", where)
    try:
        templates = {Family(key): str(value) for key, value in _mapping(raw, "templates", where).items()}
    except ValueError as exc:
        raise TaskError(f"{where}: templates: {exc}; families are {[f.value for f in Family]}") from None
    columns = raw["columns"]
    if not isinstance(columns, dict) or "text_a" not in columns:
        raise TaskError(f"{where}: columns must map at least text_a (and text_b, label) to column names")
    try:
        column_map = ColumnMap(**{key: _column_value(v) for key, v in columns.items()})
    except TypeError as exc:
        raise TaskError(f"{where}: columns: {exc}") from None
    gen = _mapping(raw, "generator", where)
    try:
        generator = GeneratorText(
            descriptions={str(k): str(v) for k, v in _mapping(gen, "descriptions", f"{where}: generator").items()},
            connector=str(gen.get("connector", "\n")),
            repetition_penalty={
                str(k): float(v) for k, v in _mapping(gen, "repetition_penalty", f"{where}: generator").items()
            },
        )
    except (TypeError, ValueError) as exc:
        raise TaskError(f"{where}: generator: {exc}") from None
    pair = raw.get("pair", column_map.text_b is not None)
    if not isinstance(pair, bool):
        raise TaskError(f"{where}: field 'pair' must be true or false, got {pair!r}")
    positive = raw.get("f1_positive_label")
    return TaskSpec(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        labels=labels,
        label_words={str(k): str(v) for k, v in label_words.items()},
        templates=templates,
        columns=column_map,
        generator=generator,
        pair=pair,
        f1_positive_label=None if positive is None else str(positive),
        kshot_files=_kshot_files(raw, where),
        test_file=None if raw.get("test_file") is None else str(raw["test_file"]),
    )


def _builtin_tasks() -> dict[str, TaskSpec]:
    text = resources.files("dawgen.tasks").joinpath("builtin.yaml").read_text(encoding="utf-8")
    tasks = [task_from_dict(raw, "builtin.yaml") for raw in yaml.safe_load(text)]
    return {task.name.upper(): task for task in tasks}


BUILTIN_TASKS: dict[str, TaskSpec] = _builtin_tasks()


def load_task_file(path: str | Path) -> TaskSpec:
    """Load a user task from a YAML file holding one task mapping."""
    return task_from_dict(read_yaml(path, TaskError, "task file"), str(path))


def get_task(name_or_path: str | Path | TaskSpec) -> TaskSpec:
    """A built-in task by name (case-insensitive), or a user task from a YAML file."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    key = str(name_or_path)
    if key.upper() in BUILTIN_TASKS:
        return BUILTIN_TASKS[key.upper()]
    if key.endswith((".yaml", ".yml")) or Path(key).is_file():
        return load_task_file(key)
    raise TaskError(f"unknown task {key!r}: built-in tasks are {sorted(BUILTIN_TASKS)}, or give a task YAML file")
