"""Report sections from the manifest and the results: the run, the results table, the paper, what helped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from dawgen.data.oracle import ORACLE, ORACLE_LABEL, ORACLE_LEGEND
from dawgen.evaluation.metrics import aggregate, format_mean_std
from dawgen.evaluation.tables import (
    CELL_LEGEND,
    COLLAPSED_SHARE,
    collapsed,
    mixed_precision,
    precision_lines,
    record_precision,
    results_table,
    stat_cell,
)
from dawgen.reporting.document import Block, Bullets, Heading, Table, Text
from dawgen.reporting.paper import paper_results
from dawgen.reporting.run_data import OURS, PROMPT_TUNING, RunData

COLLAPSED = COLLAPSED_SHARE  # % of the test predictions on one label from which a run is flagged
BALANCED = "balanced_accuracy"
ORACLE_COUNTERPART = f"{ORACLE}+paired+surgery"  # the oracle row ours is measured against


def format_seconds(seconds: float | None) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_count(count: int | None) -> str:
    """102400 -> ``102.4K``; None -> ``-``."""
    if not isinstance(count, int | float):
        return "-"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= size:
            return f"{count / size:.4g}{suffix}"
    return str(int(count))


def get_path(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...``, or None where a level is missing."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def format_number(value: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def format_rate(value: Any) -> str:
    return format_number(value, "{:.1%}")


def mean_accuracy(runs: Sequence[Mapping[str, Any]]) -> float:
    return aggregate([run["test"] for run in runs])["accuracy"][0]


def mean_metric(runs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The mean over ``runs`` of test metric ``key``, or None when a run lacks it (e.g. an older results.json)."""
    stats = aggregate([run["test"] for run in runs]) if runs else {}
    return stats[key][0] if key in stats else None


def accuracy_cell(runs: Sequence[Mapping[str, Any]]) -> str:
    """``acc mean (std) / bal mean (std)`` (``bal -`` where the runs predate balanced accuracy)."""
    if not runs:
        return "-"
    stats = aggregate([run["test"] for run in runs])
    return f"{format_mean_std(*stats['accuracy'])} / bal {stat_cell(stats, BALANCED)}"


def is_oracle(method: str) -> bool:
    return method.startswith(f"{ORACLE}+")


def method_label(method: str) -> str:
    """The method's name in the report's tables; oracle rows say that they train on gold pool labels."""
    return f"{method} [{ORACLE_LABEL}]" if is_oracle(method) else method


def precision_blocks(records: Sequence[Mapping[str, Any]]) -> list[Block]:
    """``precision_lines`` as report blocks: each line as text, a run of ``- `` lines as one list."""
    blocks: list[Block] = []
    items: list[str] = []
    for line in [*precision_lines(records), ""]:
        if line.startswith("- "):
            items.append(line[2:])
            continue
        if items:
            blocks.append(Bullets(items))
            items = []
        if line:
            blocks.append(Text(line))
    return blocks


def _parameters(data: RunData, method: str) -> str:
    """The method's trainable-parameter count, or its range where it differs by task (e.g. the label count)."""
    counts = sorted(
        {
            r["trainable_parameters"]
            for r in data.records
            if r["method"] == method and isinstance(r.get("trainable_parameters"), int | float)
        }
    )
    if not counts:
        return "-"
    low, high = format_count(counts[0]), format_count(counts[-1])
    return low if low == high else f"{low}-{high}"


def _average(runs_per_task: Sequence[Sequence[Mapping[str, Any]]], key: str) -> str:
    """The mean of the per-task means of metric ``key``, for a method run on every task (else ``-``)."""
    means = [mean_metric(runs, key) if runs else None for runs in runs_per_task]
    return f"{fmean(means):.1f}" if len(means) > 1 and all(m is not None for m in means) else "-"


def seed_cell(run: Mapping[str, Any] | None) -> str:
    """One run: ``acc / bal b / top t%`` (``*`` when collapsed), then its conflict rate where it has one."""
    if run is None:
        return "-"
    test = run["test"]
    top = test.get("top_prediction_share")
    cell = f"{test['accuracy']:.1f} / bal {format_number(test.get(BALANCED), '{:.1f}')} / top "
    cell += format_number(top, "{:.0f}%") + ("*" if collapsed(test) else "")
    if isinstance(run.get("conflict_rate"), int | float):
        cell += f" ({run['conflict_rate']:.0%} conflicts)"
    return cell


def results(data: RunData) -> list[Block]:
    """The headline table: mean (std) over seeds of accuracy and balanced accuracy, a row per method and a
    column per task, with the averages over tasks."""
    methods, tasks, cells = data.methods, data.tasks, data.cells()
    blocks: list[Block] = [Heading(2, "Results")]
    if not methods:
        return [*blocks, Text("No run has a test accuracy yet.")]
    table = Table.from_markdown(results_table(cells, methods, tasks))
    for row, method in zip(table.rows, methods, strict=True):
        runs = [cells[method, task] for task in tasks]
        row[0] = method_label(method)
        row += [_average(runs, "accuracy"), _average(runs, BALANCED), _parameters(data, method)]
    table.header.extend(["avg", "avg bal", "#params"])
    seeds = ", ".join(map(str, data.seeds))
    legend = (
        f"Seeds {seeds}. {CELL_LEGEND} avg, avg bal: mean of the per-task mean accuracies (balanced accuracies), "
        "for methods run on every task. #params: trainable parameters."
    )
    if any(is_oracle(m) for m in methods):
        legend += f" {ORACLE_LEGEND}"
    return [*blocks, table, Text(legend), *precision_blocks(data.records)]


def per_seed(data: RunData) -> list[Block]:
    """Every seed's test numbers, a row per task and seed and a column per method."""
    methods, cells = data.methods, data.cells()
    if not methods:
        return []
    mixed = mixed_precision(data.records)
    blocks: list[Block] = [
        Heading(2, "Per seed"),
        Text(
            "Test accuracy / balanced accuracy / top-label share (the share of the test predictions on the most "
            f"predicted label; `*`: at least {COLLAPSED:.0f}%, the classifier has collapsed); in brackets the share "
            "of paired steps whose gradients conflicted, where there is one."
            + (" The records ran in different precisions: each cell says its own." if mixed else "")
        ),
    ]
    rows = []
    for task in data.tasks:
        for seed in data.seeds:
            row = [task, str(seed)]
            for method in methods:
                run = next((r for r in cells[method, task] if r["seed"] == seed), None)
                cell = seed_cell(run)
                if run is not None and mixed:
                    cell += f" ({record_precision(run)})"
                row.append(cell)
            if any(cell != "-" for cell in row[2:]):
                rows.append(row)
    return [*blocks, Table(["task", "seed", *methods], rows)]


def helped(data: RunData) -> list[Block]:
    """Per task, the paper's method against plain prompt tuning, and the best method."""
    blocks: list[Block] = [Heading(2, "What helped")]
    ours, paper = data.ours(), paper_results()
    lines = []
    for task in data.tasks:
        means = {m: mean_accuracy(data.scored(m, task)) for m in data.methods if data.scored(m, task)}
        if not means:
            continue
        line = f"{task}: "
        if ours in means and PROMPT_TUNING in means:
            delta = means[ours] - means[PROMPT_TUNING]
            line += f"{ours} {means[ours]:.1f} vs pt {means[PROMPT_TUNING]:.1f}: {delta:+.1f} points"
            paper_ours, paper_pt = paper.row("ours"), paper.row(PROMPT_TUNING)
            if paper_ours and paper_pt and paper_ours.score(task) is not None and paper_pt.score(task) is not None:
                line += f" (paper, {paper.backbone}: {paper_ours.score(task) - paper_pt.score(task):+.1f})"
            bal = {m: mean_metric(data.scored(m, task), BALANCED) for m in (ours, PROMPT_TUNING)}
            if None not in bal.values():
                line += f"; balanced accuracy {bal[ours]:.1f} vs {bal[PROMPT_TUNING]:.1f}: "
                line += f"{bal[ours] - bal[PROMPT_TUNING]:+.1f}"
        else:
            line += "no ours-vs-pt comparison (the run needs both pt and ours)"
        contenders = [m for m in means if not is_oracle(m)]  # the oracle is a ceiling, not a contender
        if contenders:
            best = max(contenders, key=means.__getitem__)
            line += f"; best here: {best} ({means[best]:.1f})"
        lines.append(f"{line}.")
    return [*blocks, Bullets(lines) if lines else Text("No results to compare.")]


def oracle_counterpart(method: str, methods: Sequence[str]) -> str | None:
    """The oracle row ``method`` is measured against: ``oracle+<its strategy>`` (for ours,
    ``oracle+paired+surgery``, else the run's first oracle row), or None."""
    recipe = OURS[-1] if method in OURS else method
    same = f"{ORACLE}+{recipe.partition('+')[2]}"
    if same in methods:
        return same
    return next((m for m in methods if is_oracle(m)), None) if method in OURS else None


def oracle_gap_fraction(method: float, pt: float, oracle: float) -> float | None:
    """``(method - pt) / (oracle - pt)``, the share of the oracle's gain over pt; None when it gains nothing."""
    return None if oracle - pt <= 0 else (method - pt) / (oracle - pt)


def recovered(method: float | None, pt: float | None, oracle: float | None) -> str:
    """``oracle_gap_fraction`` as a percentage; n/a when the oracle gains nothing over pt."""
    if method is None or pt is None or oracle is None:
        return "-"
    fraction = oracle_gap_fraction(method, pt, oracle)
    return "n/a (the oracle gains nothing)" if fraction is None else f"{fraction:.0%}"


def oracle_recovery(data: RunData) -> list[Block]:
    """Per task, the share of the oracle's gain over pt that ours (and every generator row with an oracle
    counterpart) recovers, on balanced accuracy and accuracy. Empty when the run has no oracle row."""
    oracles = [m for m in data.methods if is_oracle(m)]
    if not oracles:
        return []
    blocks: list[Block] = [
        Heading(2, f"Against the gold-data oracle: {ORACLE_LABEL}"),
        Text(
            f"The {ORACLE} rows ({ORACLE}+paired+surgery, {ORACLE}+merged, ...) train exactly like the generator "
            "rows of the same strategy (the same count per label, batching and steps) on rows of the task's pool "
            "with their gold labels in place of generated samples, every k-shot row of any seed "
            "removed: what a perfect generator would reach in this budget. recovered = (method - pt) / "
            "(oracle - pt), the share of the oracle's gain over pt that a generator's data gives, each score a "
            f"mean over the seeds all three rows have; n/a where the oracle gains nothing. Ours is measured against "
            f"{ORACLE_COUNTERPART} (without it, the run's first oracle row), every other generator row against the "
            "oracle row of its own strategy."
        ),
    ]
    rows = []
    generated = [m for m in data.methods if m != PROMPT_TUNING and not is_oracle(m)]
    ours = data.ours()
    generated.sort(key=lambda m: m != ours)
    for task in data.tasks:
        for method in generated:
            oracle = oracle_counterpart(method, data.methods)
            matched = data.matched((PROMPT_TUNING, method, oracle), task) if oracle else [[]]
            if not all(matched):
                continue
            for name, key in (("balanced accuracy", BALANCED), ("accuracy", "accuracy")):
                values = [mean_metric(r, key) for r in matched]
                shown = [format_number(v, "{:.1f}") for v in values]
                rows.append([task, method, oracle, name, *shown, recovered(values[1], values[0], values[2])])
    if not rows:
        return [*blocks, Text("No task has pt, a generator row and its oracle counterpart all with results.")]
    header = ["task", "method", "its oracle", "metric", "pt", "method score", "oracle score", "recovered"]
    return [*blocks, Table(header, rows)]


def paper_comparison(data: RunData) -> list[Block]:
    """Our mean (std) beside the paper's T5-large numbers, for the methods and tasks both have."""
    paper = paper_results()
    blocks: list[Block] = [Heading(2, f"Beside the paper ({paper.backbone})")]
    tasks = [task for task in data.tasks if task.upper() in paper.tasks]
    matched = [(m, paper.row(m)) for m in data.methods]
    matched = [(m, row) for m, row in matched if row is not None]
    if not tasks or not matched:
        return [*blocks, Text("None of the run's tasks and methods appears in the paper's tables.")]
    blocks.append(
        Text(
            f"The paper: {paper.backbone}, test accuracy in %, mean over 5 seeds (Tables 1-3 of Guo et al., "
            "COLM 2024). Ours: mean (std) over this run's seeds, with the run's own models and budget, so "
            "compare trends, not absolute numbers. avg: over the tasks shown."
        )
    )
    header = ["method", "paper row", "paper #params"] + [f"{t} {who}" for t in tasks for who in ("ours", "paper")]
    rows = []
    for method, row in matched:
        cells, ours_means, paper_scores = [method, f"{row.paper} (Table {row.table})", row.params], [], []
        for task in tasks:
            runs, score = data.scored(method, task), row.score(task)
            cells += [accuracy_cell(runs), "-" if score is None else f"{score:.2f}"]
            if runs and score is not None:
                ours_means.append(mean_accuracy(runs))
                paper_scores.append(score)
        if len(tasks) > 1:
            complete = len(ours_means) == len(tasks)
            cells += [f"{fmean(ours_means):.1f}", f"{fmean(paper_scores):.2f}"] if complete else ["-", "-"]
        rows.append(cells)
    if len(tasks) > 1:
        header += ["avg ours", "avg paper"]
    blocks.append(Table(header, rows))
    missing = paper.unmatched(data.methods)
    if missing:
        blocks.append(Text("Table 1 rows this run has no counterpart for: " + ", ".join(r.paper for r in missing)))
    return blocks
