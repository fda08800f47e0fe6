"""Typed configs from YAML files and command-line overrides, with errors that name the key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or option that cannot be used."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type (enums, numbers, optionals)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in annotation)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}") from None
    if annotation is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if annotation is int and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is bool and not isinstance(value, bool):
        spelled = {"true": True, "false": False}.get(value.lower()) if isinstance(value, str) else None
        if spelled is None:  # a --set KEY=VALUE arrives as text
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return spelled
    if annotation is str and not isinstance(value, str):
        return str(value)
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad values raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown}; known options: {sorted(names)}")
    values = {key: _coerce(value, hints[key], f"{source}: option '{key}'") for key, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def read_yaml(path: str | Path, error: type[ValueError] = ConfigError, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or bad YAML raises ``error`` naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {yaml_problem(exc)}") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}" + (f" ({context})" if context else "")


EXTENDS = "extends"


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping of options (an empty file is an empty mapping).

    ``extends: other.yaml`` (a path relative to this file) starts from that file's options: this
    file's mappings merge into the other's key by key, any other value replaces the other's.
    """
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    if EXTENDS not in data:
        return data
    parent = data.pop(EXTENDS)
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: option '{EXTENDS}' must be the path of another YAML file, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if parent_path in _seen or parent_path == path.resolve():
        raise ConfigError(f"{path}: '{EXTENDS}: {parent}' makes a cycle of config files")
    if not parent_path.is_file():
        raise ConfigError(f"{path}: option '{EXTENDS}': {parent_path}: config file not found")
    return merge_options(load_yaml(parent_path, (*_seen, path.resolve())), data)


def merge_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; a mapping in both is merged the same way, recursively."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge_options(merged[key], value)
        merged[key] = value
    return merged


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-friendly values."""
    return {
        key: (value.value if isinstance(value, Enum) else value) for key, value in dataclasses.asdict(config).items()
    }


def settings_fingerprint(config: Any, key: str = "") -> str:
    """A short hash of a config (and any other ``key`` a run must match), to check a checkpoint belongs to it."""
    settings = json.dumps({"config": to_dict(config), "key": key}, sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
