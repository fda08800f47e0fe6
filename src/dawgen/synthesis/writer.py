"""Incremental output: one JSON Lines part file per process, resumable; the deterministic merge and summary.

While a run goes, every generated sample (kept or not, with the reason) is appended to
``<out>.parts/part-<rank>.jsonl``, one flushed write per batch. A killed run leaves at worst a partial
last line, which is cut on restart; samples already written are skipped. At the end the records of
all parts are merged by sample index, duplicates are marked, and three files are written atomically:
``<out>`` (the kept samples, the format ``load_synthetic`` reads), ``<stem>.rejected.jsonl`` and
``<stem>.summary.json``; the parts folder is then removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dawgen.synthesis.config import DedupKey, Reject
from dawgen.synthesis.filters import mark_duplicates
from dawgen.synthesis.stopping import StopReason
from dawgen.utils.io import atomic_write_json, atomic_write_text

RUN_FILE = "run.json"  # the settings the part files were written with
OUTPUT_FIELDS = (
    "text_a", "text_b", "label", "generator", "seed", "index", "mean_logprob", "num_tokens", "overlap",
    "label_margin", "label_logprobs", "relatedness", "judge_probability", "stop",
)  # fmt: skip


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def summary_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.summary.json")


def rejected_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.rejected.jsonl")


def part_path(folder: Path, rank: int) -> Path:
    return folder / f"part-{rank:05d}.jsonl"


def cut_partial_line(path: Path) -> None:
    """Truncate ``path`` after its last newline (what a kill during a write leaves behind)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


class PartWriter:
    """Appends records to one part file, a batch per flushed (and fsynced) write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_partial_line(path)
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_parts(folder: Path) -> dict[int, dict[str, Any]]:
    """Every complete record of every part file, by sample index (an unterminated last line is ignored)."""
    records: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("part-*.jsonl")):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.split("\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not a JSON record ({exc.msg})") from None
            records.setdefault(record["index"], record)
    return records


def check_run_settings(folder: Path, settings: dict[str, Any], write: bool = True) -> None:
    """Refuse to continue part files written with other settings; else record ``settings`` (if ``write``)."""
    path = folder / RUN_FILE
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings:
            changed = sorted(key for key in settings.keys() | saved.keys() if settings.get(key) != saved.get(key))
            raise ValueError(
                f"{folder} holds a generation run with other settings ({', '.join(changed)}); "
                "run again with the same settings to resume, or delete the folder to start over"
            )
        return
    if write:
        atomic_write_json(path, settings)


@dataclass
class LabelTally:
    """What became of one label's samples so far."""

    attempted: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)  # in sample-index order
    rejected: list[dict[str, Any]] = field(default_factory=list)  # their ``reject`` says why

    @property
    def reasons(self) -> Counter[str]:
        return Counter(record["reject"] for record in self.rejected)


def tally(records: Iterable[Mapping[str, Any]], labels: Sequence[str], dedup: DedupKey) -> dict[str, LabelTally]:
    """Per label: samples attempted, kept (duplicates removed) and rejected by reason."""
    ordered = [dict(record) for record in sorted(records, key=lambda r: r["index"])]
    mark_duplicates(ordered, dedup)
    tallies = {label: LabelTally() for label in labels}
    for record in ordered:
        entry = tallies[record["label"]]
        entry.attempted += 1
        (entry.kept if record.get("reject") is None else entry.rejected).append(record)
    return tallies


def _stop_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(record.get("stop") for record in records)
    return {reason.value: counts[reason.value] for reason in StopReason}


def _jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def finalize(
    out: Path, records: Sequence[Mapping[str, Any]], labels: Sequence[str], per_label: int, dedup: DedupKey,
    info: dict[str, Any], gave_up: Mapping[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write the merged output, the rejected samples and the summary (``info`` added to it); remove the parts.

    ``gave_up``: the labels that ended short of ``per_label`` and why (see ``plan.give_up_reason``).
    """
    gave_up = dict(gave_up or {})
    tallies = tally(records, labels, dedup)
    written = sorted((r for t in tallies.values() for r in t.kept[:per_label]), key=lambda r: r["index"])
    rejected = sorted((r for t in tallies.values() for r in t.rejected), key=lambda r: r["index"])
    atomic_write_text(out, _jsonl({k: r[k] for k in OUTPUT_FIELDS if r.get(k) is not None} for r in written))
    atomic_write_text(rejected_path(out), _jsonl(rejected))
    per_label_summary = {
        label: {
            "attempted": t.attempted,
            "written": min(len(t.kept), per_label),
            "surplus": max(0, len(t.kept) - per_label),  # kept but beyond the target (top-up rounds overshoot)
            "shortfall": max(0, per_label - len(t.kept)),
            "rejected": {reason.value: t.reasons[reason.value] for reason in Reject},
            "gave_up": gave_up.get(label),
        }
        for label, t in tallies.items()
    }
    summary = {
        **info,
        "target_per_label": per_label,
        "attempted": sum(t.attempted for t in tallies.values()),
        "written": len(written),
        "filters": {reason.value: sum(t.reasons[reason.value] for t in tallies.values()) for reason in Reject},
        "stops": _stop_counts(records),  # how the attempts ended: eos, sentence end, or the token budget
        "labels": per_label_summary,
        "gave_up": {label: gave_up[label] for label in labels if label in gave_up},  # empty: every label complete
        "files": {"synthetic": str(out), "rejected": str(rejected_path(out))},
    }
    atomic_write_json(summary_path(out), summary)
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return summary
