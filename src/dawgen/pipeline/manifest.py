"""A run's manifest: its config, the software and machine it ran on, and every stage with its wall time."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from dawgen.config import ConfigError
from dawgen.constants import MANIFEST_FILE
from dawgen.models.precision import machine_record
from dawgen.utils.io import atomic_write_json

PACKAGES = ("dawgen", "torch", "transformers", "peft", "accelerate")
MANIFEST_LOCK = ".manifest.lock"  # held while a process merges its stage into the manifest


@functools.cache
def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@functools.cache
def git_commit() -> str | None:
    """The commit of the dawgen checkout this code runs from (None for an installed wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip() if done.returncode == 0 else ""
    return commit or None


def device_description() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@dataclass
class Manifest:
    """``manifest.json`` of a run folder, rewritten atomically after every stage."""

    folder: Path
    config: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def open(cls, folder: Path, config: dict[str, Any]) -> Manifest:
        """The folder's manifest (its stages kept when it exists), now recording ``config``."""
        path = folder / MANIFEST_FILE
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: not a readable manifest ({exc}); is this a dawgen run folder?") from None
            if not isinstance(saved, dict) or not isinstance(saved.get("stages", []), list):
                raise ConfigError(f"{path}: not a dawgen manifest (expected an object with a 'stages' list)")
            return cls(folder, config, saved.get("stages", []), saved.get("created", ""))
        return cls(folder, config)

    def record(
        self, stage: str, task: str, seed: int, name: str, folder: Path, key: str, seconds: float,
        precision: str | None = None,
    ) -> None:  # fmt: skip
        """A stage that ran (a cached stage keeps the wall time of the run that made it); ``precision``: the
        resolved precision it ran in ("fp32", "bf16-autocast").

        Several ``dawgen run`` processes may share a run folder (other tasks, seeds or methods, each stage
        run by one of them): under the folder's lock the stages on disk, which another process may have
        added to, are read and merged before this one is written."""
        relative = self.relative(folder)
        entry = {"stage": stage, "task": task, "seed": seed, "name": name, "folder": relative, "key": key,
                 "seconds": round(seconds, 1), "precision": precision}  # fmt: skip
        with FileLock(self.folder / MANIFEST_LOCK):
            merged = {s["folder"]: s for s in [*self.stages, *self._saved_stages()]}
            merged[relative] = entry
            self.stages = list(merged.values())
            self.save()

    def _saved_stages(self) -> list[dict[str, Any]]:
        """The stages in the folder's manifest file as it is now (none when it is missing or unreadable)."""
        try:
            saved = json.loads((self.folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return []
        return saved.get("stages", []) if isinstance(saved, dict) else []

    def has(self, folder: Path) -> bool:
        """Whether a stage wrote ``folder`` (its files alone may be left from a killed run)."""
        return any(s["folder"] == self.relative(folder) for s in self.stages)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.folder))

    def save(self) -> None:
        atomic_write_json(
            self.folder / MANIFEST_FILE,
            {"config": self.config, "versions": versions(), "git_commit": git_commit(),
             "device": device_description(), **machine_record(), "created": self.created, "stages": self.stages},
        )  # fmt: skip
