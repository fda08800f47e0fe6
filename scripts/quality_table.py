"""Synthetic-set quality reports (``dawgen inspect-synthetic --out DIR``) side by side, as Markdown.

    python scripts/quality_table.py "FewGen RTE=results/quality/fewgen-rte-13" \
        "dawgen RTE=results/quality/dawgen-rte-13"

One row per set and label: size, mean length of the generated side against the real one, distinct-2
and self-BLEU (samples of 200), verbatim / near-copy rates, MiniLM centroid cosine with the same real
label and with the other real label(s), and MMD^2 against the same real label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dawgen.constants import QUALITY_REPORT


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def rows(name: str, report: dict[str, Any]) -> list[str]:
    lines = []
    copies = report.get("copies", {}).get("per_label", {})
    embeddings = report.get("embeddings", {})
    similarity, matrix = embeddings.get("per_label", {}), embeddings.get("centroid_cosine_matrix", {})
    for label, count in report["label_balance"]["synthetic"].items():
        length, diversity = report["length_words"][label], report["diversity"]["per_label"][label]
        others = [v for real_label, v in matrix.get(label, {}).items() if real_label != label]
        other = sum(others) / len(others) if others else None
        lines.append(
            f"| {name} | {label} | {count} | {_number(length['synthetic'], '.1f')} / {_number(length['real'], '.1f')} "
            f"| {_number(diversity['distinct_2'], '.3f')} | {_number(diversity['self_bleu'], '.3f')} "
            f"| {_number(copies.get(label, {}).get('verbatim_rate'), '.1%')} "
            f"| {_number(copies.get(label, {}).get('near_copy_rate'), '.1%')} "
            f"| {_number(similarity.get(label, {}).get('centroid_cosine'), '.3f')} | {_number(other, '.3f')} "
            f"| {_number(similarity.get(label, {}).get('mmd2_rbf'), '.4f')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="NAME=FOLDER (a folder holding quality.json)")
    args = parser.parse_args()
    lines = [
        "| set | label | kept | words syn / real | distinct-2 | self-BLEU | verbatim copies | near copies "
        "| cos same label | cos other label | MMD² |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in args.sets:
        name, _, folder = item.partition("=")
        lines += rows(name, json.loads((Path(folder) / QUALITY_REPORT).read_text(encoding="utf-8")))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
