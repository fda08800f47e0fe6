"""Where an exported synthetic set came from, as the dataset card records it (``dawgen.synthesis.export``).

Beside a dawgen set its ``<stem>.summary.json`` (generation) and ``quality.json`` (``inspect-synthetic``) are
read when present, and in a ``dawgen run`` folder the run's ``manifest.json``: the generator model and
variant, its key and folder, the task, the k-shot split and seed, the generation options, the filter counts
and the quality headline numbers.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dawgen.constants import GENERATOR_DIR, GENERATOR_SETTINGS_FILE, MANIFEST_FILE, QUALITY_REPORT, RESULT_FILE
from dawgen.data.oracle import ORACLE_LABEL
from dawgen.tasks.schema import TaskSpec

if TYPE_CHECKING:
    from dawgen.synthesis.export import SourceSet


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def summary_of(path: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """``<stem>.summary.json`` beside a synthetic file (None where there is none)."""
    if path.is_dir():
        return None, None
    candidate = path.with_name(f"{path.stem}.summary.json")
    summary = _read_json(candidate) if candidate.is_file() else None
    return (candidate, summary) if summary is not None else (None, None)


def quality_of(path: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """``quality.json`` in the set's folder, if it reports on this file."""
    candidate = (path if path.is_dir() else path.parent) / QUALITY_REPORT
    report = _read_json(candidate) if candidate.is_file() else None
    if report is None:
        return None, None
    named = report.get("synthetic_file")
    if named and not path.is_dir() and Path(named).name != path.name:
        return None, None  # the report of another file in the same folder
    return candidate, report


def _locate(recorded: str | None, synthetic: Path) -> Path | None:
    """A folder recorded in a summary: as written (from here), or in the run layout beside the set's folder."""
    if not recorded:
        return None
    path = Path(recorded)
    candidates = [path, synthetic.parent.parent / path.parent.name / path.name]
    return next((c for c in candidates if c.is_dir()), None)


def _folder_key(folder: Path | None, prefix: str) -> str | None:
    """The stage key in a run folder's name: ``<prefix>-<variant>-<key>`` or ``<prefix>-<key>``."""
    if folder is None or not folder.name.startswith(f"{prefix}-"):
        return None
    return folder.name.rsplit("-", 1)[-1]


def _manifest(path: Path) -> tuple[Path | None, dict[str, Any] | None]:
    for parent in list(path.resolve().parents)[:4]:
        found = _read_json(parent / MANIFEST_FILE) if (parent / MANIFEST_FILE).is_file() else None
        if found is not None:
            return parent, found
    return None, None


def generator_provenance(path: Path, summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The generator of a dawgen set: model, variant, content id, folder, run key, settings, kept epoch."""
    if not summary or not isinstance(summary.get("generator"), dict):
        return None
    recorded = summary["generator"]
    folder = _locate(recorded.get("path"), path)
    settings = _read_json(folder / GENERATOR_SETTINGS_FILE) if folder else None
    result = _read_json(folder.parent / RESULT_FILE) if folder and folder.name == GENERATOR_DIR else None
    model = (summary.get("settings") or {}).get("model") or (settings or {}).get("base_model")
    return {
        "model": model,
        "variant": recorded.get("variant") or (settings or {}).get("variant"),
        "id": recorded.get("id"),
        "folder": recorded.get("path"),
        "run_key": _folder_key(folder.parent if folder else Path(recorded.get("path") or ".").parent, "generator"),
        "config": (settings or {}).get("config"),
        "kept": (settings or {}).get("info"),
        "precision": (result or {}).get("precision"),
    }


def kshot_provenance(path: Path, generator: dict[str, Any] | None, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The k-shot split the set was made from: k, seed and data, from the run's manifest, the generator's
    settings, the oracle's summary, or the folder name of a FewGen set (``<k>-<seed>``)."""
    found: dict[str, Any] = {"k": None, "seed": None, "data": None, "from": None}
    run, manifest = _manifest(path)
    seed_folder = next((p.name for p in path.resolve().parents if re.fullmatch(r"seed-\d+", p.name)), None)
    if manifest is not None and seed_folder is not None:
        config = manifest.get("config") or {}
        found |= {"k": config.get("k"), "seed": int(seed_folder[5:]), "data": config.get("data")}
        found["from"] = f"run manifest {run / MANIFEST_FILE}"
    elif generator and isinstance(generator.get("config"), dict) and "seed" in generator["config"]:
        found |= {"seed": generator["config"]["seed"], "from": "generator settings (split seed = tuning seed)"}
    elif summary and summary.get("source") == ORACLE_LABEL:
        found |= {"seed": summary.get("seed"), "from": "oracle summary (k-shot rows of every seed removed)"}
    else:
        match = next((re.fullmatch(r"(\d+)-(\d+)", p.name) for p in [path.parent] if not path.is_dir()), None)
        if match:
            found |= {"k": int(match[1]), "seed": int(match[2]), "from": f"folder name {path.parent.name}"}
    return found


def quality_headline(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quality report's headline numbers: sizes, balance, diversity against the real set, copies, embeddings."""
    if not report:
        return None
    diversity = report.get("diversity") or {}
    copies = report.get("copies") or {}
    embeddings = (report.get("embeddings") or {}).get("per_label") or {}
    return {
        "size": report.get("size"),
        "real": report.get("real"),
        "seed": report.get("seed"),
        "max_over_min": (report.get("label_balance") or {}).get("max_over_min"),
        "diversity_size_matched": diversity.get("synthetic_size_matched"),
        "diversity_real": diversity.get("real"),
        "verbatim_rate": copies.get("verbatim_rate"),
        "near_copy_rate": copies.get("near_copy_rate"),
        "centroid_cosine": {label: v.get("centroid_cosine") for label, v in embeddings.items()} or None,
        "mmd2_rbf": {label: v.get("mmd2_rbf") for label, v in embeddings.items()} or None,
    }


def source_kind(path: Path, summary: dict[str, Any] | None, table_columns: Sequence[str]) -> str:
    if path.is_dir():
        return "dataset folder"
    if summary and summary.get("source") == ORACLE_LABEL:
        return "oracle (gold-labelled pool sample)"
    if summary and "generator" in summary:
        return "dawgen synthetic JSONL"
    if "text1" in table_columns or path.name == "gen-train.json":
        return "FewGen gen-train.json"
    return "labelled file"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_provenance(path: Path, task: TaskSpec, source: SourceSet, fmt: str, kind: str) -> dict[str, Any]:
    """Every fact the card records, as plain JSON values."""
    summary_file, summary = summary_of(path)
    quality_file, report = quality_of(path)
    generator = generator_provenance(path, summary)
    counts = Counter(example.label for example in source.examples)
    generation = None
    if summary and "generator" in summary:
        settings = summary.get("settings") or {}
        generation = {
            "config": summary.get("config"), "pool": settings.get("pool"), "precision": summary.get("precision"),
            "processes": summary.get("processes"), "rounds": summary.get("rounds"),
        }  # fmt: skip
    filters = None
    if summary and "attempted" in summary:
        filters = {key: summary.get(key) for key in ("target_per_label", "attempted", "written", "filters", "labels")}
    return {
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exported_with": {"dawgen": _version("dawgen"), "datasets": _version("datasets")},
        "format": fmt,
        "source": {
            "path": str(path),
            "kind": kind,
            "summary": str(summary_file) if summary_file else None,
            "quality": str(quality_file) if quality_file else None,
            "synthetic_key": _folder_key(path.parent, "synthetic"),
        },
        "task": {"name": task.name, "labels": list(task.labels), "pair": task.pair},
        "rows": len(source.examples),
        "per_label": {label: counts[label] for label in task.labels},
        "verbatim_copies": source.verbatim_copies,
        "dropped_copies": source.dropped_copies,
        "metadata_columns": {name: dtype for name, (dtype, _) in source.metadata.items()},
        "left_out_columns": source.left_out,
        "generator": generator,
        "kshot": kshot_provenance(path, generator, summary),
        "generation": generation,
        "filters": filters,
        "oracle": summary if summary and summary.get("source") == ORACLE_LABEL else None,
        "quality": quality_headline(report),
    }
