"""Report sections on the synthetic sets: generation summary, quality table and figure, samples per label."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from dawgen.data.oracle import ORACLE_LABEL
from dawgen.data.synthetic import load_synthetic
from dawgen.models.precision import describe_record
from dawgen.reporting.document import Block, Bullets, Heading, Image, Table, Text
from dawgen.reporting.run_data import RunData, SyntheticInfo
from dawgen.reporting.sections import format_number, format_rate, get_path
from dawgen.tasks import get_task
from dawgen.tasks.schema import TaskSpec

SAMPLES_PER_LABEL = 3
MAX_SAMPLE_CHARS = 400


def quality_table(quality: Mapping[str, Any]) -> Table:
    """Per label (and over all): size, copy rates, diversity, length, and embedding similarity where computed."""
    labels = list(get_path(quality, "label_balance", "synthetic") or {})
    copies, embeddings = quality.get("copies"), get_path(quality, "embeddings", "per_label")
    header = ["label", "synthetic", "real"]
    if copies:
        header += ["verbatim copies", f"near copies (overlap ≥ {get_path(copies, 'threshold')})"]
    header += ["distinct-2", "self-BLEU", "words (syn / real)"]
    if embeddings:
        header += ["centroid cosine", "MMD²"]
    rows = []
    for label in labels:
        row = [label] + [str(get_path(quality, "label_balance", side, label)) for side in ("synthetic", "real")]
        if copies:
            row += [
                format_rate(get_path(copies, "per_label", label, key)) for key in ("verbatim_rate", "near_copy_rate")
            ]
        row += [
            format_number(get_path(quality, "diversity", "per_label", label, key))
            for key in ("distinct_2", "self_bleu")
        ]
        length = [
            format_number(get_path(quality, "length_words", label, side), "{:.1f}") for side in ("synthetic", "real")
        ]
        row.append(" / ".join(length))
        if embeddings:
            cosine, mmd = get_path(embeddings, label, "centroid_cosine"), get_path(embeddings, label, "mmd2_rbf")
            row += [format_number(cosine), format_number(mmd, "{:.4f}")]
        rows.append(row)
    total = ["all labels"] + [str(get_path(quality, "size", side)) for side in ("synthetic", "real")]
    if copies:
        total += [format_rate(get_path(copies, key)) for key in ("verbatim_rate", "near_copy_rate")]
    total += [
        format_number(get_path(quality, "diversity", "synthetic", key)) for key in ("distinct_2", "self_bleu")
    ] + ["-"]
    rows.append(total + ["-", "-"] * bool(embeddings))
    return Table(header, rows)


def task_spec(data: RunData, name: str) -> TaskSpec:
    """A built-in task by name, or a task YAML file of the run's config whose task has that name."""
    try:
        return get_task(name)
    except ValueError:
        for entry in get_path(data.manifest, "config", "tasks") or []:
            with contextlib.suppress(OSError, ValueError):
                if str(entry).endswith((".yaml", ".yml")) and (spec := get_task(entry)).name == name:
                    return spec
        raise


def samples(data: RunData, info: SyntheticInfo, per_label: int = SAMPLES_PER_LABEL) -> list[Block]:
    """The first ``per_label`` examples of every label, as written (copies included)."""
    try:
        task = task_spec(data, info.task)
        examples = load_synthetic(task, info.path, drop_copies=False).examples
    except (OSError, ValueError) as error:
        return [Text(f"Samples not shown: {data.scrub(str(error))}")]
    picked = [e for label in task.labels for e in [e for e in examples if e.label == label][:per_label]]
    if not picked:
        return [Text("The synthetic file holds no example.")]

    def clip(text: str | None) -> str:
        text = text or ""
        return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"

    pair = any(e.text_b is not None for e in picked)
    header = ["label", "text_a", "text_b"] if pair else ["label", "text_a"]
    rows = [[e.label, clip(e.text_a), clip(e.text_b)][: len(header)] for e in picked]
    return [Text(f"The first {per_label} examples of each label:"), Table(header, rows)]


def matched_diversity(quality: Mapping[str, Any]) -> list[Block]:
    """Diversity of the synthetic set at the real set's size, beside the real set's."""
    matched, real = get_path(quality, "diversity", "synthetic_size_matched"), get_path(quality, "diversity", "real")
    if not matched or not real:
        return []
    distinct = f"distinct-2 {format_number(matched.get('distinct_2'))} (real {format_number(real.get('distinct_2'))})"
    bleu = f"self-BLEU {format_number(matched.get('self_bleu'))} (real {format_number(real.get('self_bleu'))})"
    return [Text(f"At the real set's size: {distinct}, {bleu}.")]


def oracle_summary(summary: Mapping[str, Any]) -> str:
    """What the oracle's sample holds and what it removed from the pool."""
    removed, counts = summary.get("removed") or {}, summary.get("per_label") or {}
    per_label = ", ".join(f"{label} {n}" for label, n in counts.items()) or "?"
    if counts and len(set(counts.values())) == 1:
        per_label = str(next(iter(counts.values())))
    line = (
        f"{ORACLE_LABEL}: {summary.get('written', '?')} rows with their gold labels sampled from "
        f"{summary.get('pool', '?')} ({per_label} per label, target "
        f"{summary.get('target_per_label', '?')}); removed from the pool's {summary.get('pool_rows', '?')} rows: "
        f"{removed.get('kshot_rows', '?')} rows of a k-shot split (any seed, train or dev; "
        f"{summary.get('kshot_pairs', '?')} distinct k-shot pairs), {removed.get('duplicates', '?')} duplicates, "
        f"{removed.get('verbatim_copies', '?')} verbatim copies"
    )
    return line + ("; the pool ran short of the target." if summary.get("short") else ".")


def synthetic_data(data: RunData) -> list[Block]:
    """Sections 6 and 7: per synthetic file, its generation summary, quality table and figure, and samples."""
    sets = data.synthetic_sets()
    blocks: list[Block] = [Heading(2, "Synthetic data")]
    if not sets:
        return [*blocks, Text("No run used synthetic data.")]
    for info in sets:
        summary = info.summary
        oracle = isinstance(summary, Mapping) and summary.get("source") == ORACLE_LABEL
        title = f"{info.task}: {data.shown(info.relative)}" + (f" ({ORACLE_LABEL})" if oracle else "")
        blocks += [Heading(3, title), Bullets([f"used by: {', '.join(info.users)}"])]
        if oracle:
            blocks.append(Text(oracle_summary(summary)))
        elif summary:
            filtered = {k: v for k, v in (summary.get("filters") or {}).items() if v}
            line = (
                f"generation: {summary.get('written', '?')} written of {summary.get('attempted', '?')} attempted "
                f"(target {summary.get('target_per_label', '?')} per label)"
            )
            if filtered:
                line += "; filtered: " + ", ".join(f"{k} {v}" for k, v in filtered.items())
            gave_up = summary.get("gave_up") or {}
            if gave_up:
                line += "; gave up on " + ", ".join(f"{label} ({reason})" for label, reason in gave_up.items())
            blocks.append(Text(f"{line}; precision: {describe_record(summary.get('compute'))}"))
        quality = info.quality
        if quality:
            blocks.append(quality_table(quality))
            blocks += matched_diversity(quality)
        if info.quality_plot is not None:
            blocks.append(Image(info.quality_plot, f"{info.task}: quality of {data.shown(info.relative)}"))
        if not info.path.exists():
            blocks.append(Text("The synthetic file itself was not found."))
            continue
        blocks += samples(data, info)
    return blocks
