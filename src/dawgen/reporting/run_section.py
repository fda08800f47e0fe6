"""The report's last section: what was run, where, with which configuration and versions, and how long it took."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dawgen.reporting.document import Block, Bullets, Heading, Table, Text
from dawgen.reporting.run_data import RunData
from dawgen.reporting.sections import format_seconds

STAGES = ("generator", "synthesis", "classifier", "evaluation")
MAX_STAGE_ROWS = 60  # beyond this, only the slowest stages are listed one by one
MAX_VALUE_CHARS = 120


def _flatten(value: Any, shown: Callable[[str], str], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, value)`` per leaf of a nested mapping; absolute paths as ``shown`` renders them."""
    if isinstance(value, Mapping) and value:
        return [pair for key, item in value.items() for pair in _flatten(item, shown, f"{prefix}{key}.")]
    if isinstance(value, list):
        value = [shown(v) if isinstance(v, str) and os.path.isabs(v) else v for v in value]
    elif isinstance(value, str) and os.path.isabs(value):
        value = shown(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return [(prefix.rstrip("."), text)]


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-"


def run_details(data: RunData) -> list[Block]:
    """The run, its configuration, versions and wall time per stage (paths relative to the run folder)."""
    manifest = data.manifest
    blocks: list[Block] = [Heading(2, "Run details: configuration, versions, wall times")]
    facts = [
        f"run folder: {data.run_dir.resolve().name} (every path in this report is relative to it)",
        f"tasks: {', '.join(data.tasks) or '-'}; seeds: {', '.join(map(str, data.seeds)) or '-'}",
        f"methods: {', '.join(data.methods) or '-'}",
    ]
    if not manifest:
        return [*blocks, Bullets(facts), Text("manifest.json not found: no configuration, versions or timings.")]
    commit = manifest.get("git_commit") or "unknown (not run from a git checkout)"
    facts = [
        f"created: {manifest.get('created') or '-'}",
        f"device: {manifest.get('device') or '-'}",
        f"CPU: {manifest.get('cpu') or '-'}; native bf16: {_yes_no(manifest.get('cpu_native_bf16'))}",
        f"git commit: {commit}",
        *facts,
    ]
    blocks.append(Bullets(facts))
    config = manifest.get("config")
    if isinstance(config, Mapping) and config:
        rows = [list(pair) for pair in _flatten(config, data.shown)]
        blocks += [Heading(3, "Configuration"), Table(["setting", "value"], rows)]
    versions = manifest.get("versions")
    if isinstance(versions, Mapping) and versions:
        blocks += [Heading(3, "Versions"), Table(["package", "version"], [[k, str(v)] for k, v in versions.items()])]
    return blocks + stage_times(manifest.get("stages") or [], data.shown)


def stage_times(stages: Sequence[Mapping[str, Any]], shown: Callable[[str], str]) -> list[Block]:
    """Wall time per stage kind, then per stage (the slowest ones when there are many)."""
    stages = [s for s in stages if isinstance(s, Mapping)]
    if not stages:
        return []
    total = sum(s.get("seconds") or 0 for s in stages)
    kinds = [k for k in STAGES if any(s.get("stage") == k for s in stages)]
    kinds += sorted({str(s.get("stage")) for s in stages} - set(kinds))
    rows = []
    for kind in kinds:
        seconds = sum(s.get("seconds") or 0 for s in stages if str(s.get("stage")) == kind)
        count = sum(str(s.get("stage")) == kind for s in stages)
        rows.append([kind, str(count), format_seconds(seconds), f"{seconds / total:.0%}" if total else "-"])
    rows.append(["all", str(len(stages)), format_seconds(total), "100%" if total else "-"])
    blocks: list[Block] = [Heading(3, "Wall time per stage"), Table(["stage", "runs", "wall time", "share"], rows)]
    listed = sorted(stages, key=lambda s: -(s.get("seconds") or 0))[:20] if len(stages) > MAX_STAGE_ROWS else stages
    if len(listed) < len(stages):
        blocks.append(Text(f"The {len(listed)} slowest of {len(stages)} stages:"))
    columns = ("stage", "task", "seed", "name", "folder", "precision")

    def cell(stage: Mapping[str, Any], key: str) -> str:
        value = stage.get(key)
        return "-" if value is None else shown(str(value)) if key == "folder" else str(value)

    rows = [[cell(s, k) for k in columns] + [format_seconds(s.get("seconds"))] for s in listed]
    return [*blocks, Table([*columns, "wall time"], rows)]
