#!/usr/bin/env python
"""Validate dawgen's demo entailment set (src/dawgen/resources/demo) and print a summary.

Checks: header, field counts, labels and label counts per file, unique integer indices across
files, no tab/newline/control characters inside fields, no empty or padded fields, no duplicate
pairs, no premise shared between train/dev/test, sentence lengths within bounds, train/dev grouped
by label (entailment first), pool size, no duplicate pool lines, no pool sentence equal to a
premise, and that task.yaml loads as a dawgen task.

Usage: python scripts/check_demo_data.py [DEMO_DIR]      (exit status 1 if anything is wrong)
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "src" / "dawgen" / "resources" / "demo"

HEADER = ["index", "sentence1", "sentence2", "label"]
LABELS = ("entailment", "not_entailment")
EXPECTED = {"train.tsv": 16, "dev.tsv": 16, "test.tsv": 75}  # examples per label
GROUPED = {"train.tsv", "dev.tsv"}  # LM-BFF order: all of the first label, then the second
POOL_SIZE = 200
PREMISE_WORDS = (8, 30)
HYPOTHESIS_WORDS = (4, 15)
BAD_CHARS = re.compile(r"[\t\n\r\x00-\x1f\x7f]")
WORD = re.compile(r"[a-z0-9']+")


def n_words(text: str) -> int:
    return len(text.split())


def norm(text: str) -> str:
    """Comparison key: case- and whitespace-insensitive."""
    return " ".join(text.lower().split())


def overlap(premise: str, hypothesis: str) -> float:
    """Share of the hypothesis's word types that also occur in the premise."""
    h = set(WORD.findall(hypothesis.lower()))
    return len(h & set(WORD.findall(premise.lower()))) / max(len(h), 1)


class Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def check_text(self, where: str, name: str, text: str, bounds: tuple[int, int]) -> None:
        if not text:
            self.error(where, f"{name} is empty")
            return
        if BAD_CHARS.search(text):
            self.error(where, f"{name} contains a tab, newline or control character")
        if text != text.strip() or "  " in text:
            self.error(where, f"{name} has leading/trailing or doubled spaces")
        if text.startswith('"') and text.endswith('"'):
            self.error(where, f"{name} looks quoted")
        low, high = bounds
        if not low <= n_words(text) <= high:
            self.error(where, f"{name} has {n_words(text)} words (allowed {low}-{high}): {text!r}")

    def read_tsv(self, path: Path, per_label: int, indices: set[int]) -> list[tuple[int, str, str, str]]:
        rows: list[tuple[int, str, str, str]] = []
        if not path.is_file():
            self.error(path.name, "missing")
            return rows
        raw = path.read_bytes()
        if b"\r" in raw:
            self.error(path.name, "contains carriage returns (use LF line endings)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error(path.name, f"not UTF-8: {exc}")
            return rows
        if text.startswith("\ufeff"):
            self.error(path.name, "starts with a byte-order mark")
        if not text.endswith("\n"):
            self.error(path.name, "does not end with a newline")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines or lines[0].split("\t") != HEADER:
            self.error(path.name, f"header must be {chr(9).join(HEADER)!r}, got {lines[0] if lines else ''!r}")
        for number, line in enumerate(lines[1:], start=2):
            where = f"{path.name}:{number}"
            fields = line.split("\t")
            if len(fields) != len(HEADER):
                self.error(where, f"{len(fields)} fields, expected {len(HEADER)}")
                continue
            index, s1, s2, label = fields
            if not re.fullmatch(r"\d+", index):
                self.error(where, f"index {index!r} is not a non-negative integer")
                continue
            if int(index) in indices:
                self.error(where, f"index {index} already used")
            indices.add(int(index))
            if label not in LABELS:
                self.error(where, f"unknown label {label!r}")
            self.check_text(where, "sentence1", s1, PREMISE_WORDS)
            self.check_text(where, "sentence2", s2, HYPOTHESIS_WORDS)
            if norm(s1) == norm(s2):
                self.error(where, "sentence2 repeats sentence1")
            rows.append((int(index), s1, s2, label))
        counts = Counter(label for *_, label in rows)
        for label in LABELS:
            if counts[label] != per_label:
                self.error(path.name, f"{counts[label]} {label} examples, expected {per_label}")
        pairs = Counter((norm(s1), norm(s2)) for _, s1, s2, _ in rows)
        for (s1, s2), count in pairs.items():
            if count > 1:
                self.error(path.name, f"pair occurs {count} times: {s1!r} / {s2!r}")
        if path.name in GROUPED:
            order = [label for *_, label in rows]
            rank = {label: i for i, label in enumerate(LABELS)}
            if order != sorted(order, key=lambda label: rank.get(label, len(LABELS))):
                self.error(path.name, "examples must be grouped by label, entailment first")
        return rows

    def read_pool(self, path: Path) -> list[str]:
        if not path.is_file():
            self.error(path.name, "missing")
            return []
        text = path.read_text(encoding="utf-8")
        if "\r" in text:
            self.error(path.name, "contains carriage returns (use LF line endings)")
        if not text.endswith("\n"):
            self.error(path.name, "does not end with a newline")
        lines = text.rstrip("\n").split("\n")
        for number, line in enumerate(lines, start=1):
            self.check_text(f"{path.name}:{number}", "sentence", line, PREMISE_WORDS)
        if len(lines) != POOL_SIZE:
            self.error(path.name, f"{len(lines)} sentences, expected {POOL_SIZE}")
        for line, count in Counter(norm(line) for line in lines).items():
            if count > 1:
                self.error(path.name, f"sentence occurs {count} times: {line!r}")
        return lines

    def check_task(self, path: Path) -> str:
        if not path.is_file():
            self.error(path.name, "missing")
            return "missing"
        sys.path.insert(0, str(ROOT / "src"))
        try:
            from dawgen.tasks.registry import load_task_file
        except ImportError as exc:  # dawgen's dependencies are not installed: check the YAML only
            try:
                import yaml
            except ImportError:
                return f"not checked ({exc})"
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("name") != "demo-nli":
                self.error(path.name, "expected a mapping with name: demo-nli")
            return "YAML only (dawgen not importable)"
        try:
            task = load_task_file(path)
        except Exception as exc:  # report any failure to load
            self.error(path.name, f"does not load as a dawgen task: {exc}")
            return "invalid"
        if task.name != "demo-nli" or tuple(task.labels) != LABELS:
            self.error(path.name, f"expected demo-nli with labels {LABELS}, got {task.name} {task.labels}")
        return f"loads as task {task.name!r} ({', '.join(f.value for f in task.templates)} templates)"


def main(argv: list[str]) -> int:
    demo = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    checker = Checker()
    indices: set[int] = set()
    splits = {name: checker.read_tsv(demo / name, n, indices) for name, n in EXPECTED.items()}

    premise_home: dict[str, str] = {}
    for name, rows in splits.items():
        for _, s1, _, _ in rows:
            other = premise_home.setdefault(norm(s1), name)
            if other != name:
                checker.error(name, f"premise also in {other}: {s1!r}")

    pool = checker.read_pool(demo / "pool.txt")
    for number, line in enumerate(pool, start=1):
        if norm(line) in premise_home:
            checker.error(f"pool.txt:{number}", f"equals a premise in {premise_home[norm(line)]}: {line!r}")

    task_note = checker.check_task(demo / "task.yaml")
    if not (demo / "README.md").is_file():
        checker.error("README.md", "missing")

    print(f"demo data in {demo}")
    for name, rows in splits.items():
        counts = Counter(label for *_, label in rows)
        p_len = [n_words(s1) for _, s1, _, _ in rows] or [0]
        h_len = [n_words(s2) for _, _, s2, _ in rows] or [0]
        ov = {lab: [overlap(s1, s2) for _, s1, s2, label in rows if label == lab] for lab in LABELS}
        ov_text = "  ".join(f"{lab} {sum(v) / max(len(v), 1):.2f}" for lab, v in ov.items())
        print(
            f"  {name:<9} {len(rows):>3} pairs  "
            + "  ".join(f"{lab}={counts[lab]}" for lab in LABELS)
            + f"  premise words {min(p_len)}-{max(p_len)}  hypothesis words {min(h_len)}-{max(h_len)}"
            + f"  mean overlap: {ov_text}"
        )
    print(f"  pool.txt  {len(pool):>3} sentences")
    print(f"  indices   {len(indices)} unique" + (f" ({min(indices)}-{max(indices)})" if indices else ""))
    print(f"  task.yaml {task_note}")
    if checker.errors:
        print(f"\n{len(checker.errors)} problem(s):")
        for message in checker.errors:
            print(f"  - {message}")
        return 1
    print("\nOK: no problems found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
