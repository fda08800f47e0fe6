"""Which of the paper's claims the run reproduces: each held, not held or not measured, with its numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import fmean

from dawgen.reporting.document import Block, Heading, Table, Text
from dawgen.reporting.run_data import PROMPT_TUNING, RunData
from dawgen.reporting.sections import BALANCED, ORACLE_COUNTERPART, format_number, mean_metric, oracle_gap_fraction

HELD, NOT_HELD, NOT_MEASURED = "held", "not held", "not measured"
METRICS = (("accuracy", "accuracy"), ("balanced accuracy", BALANCED))
OURS_ROW = "ours"  # stands for the run's name of the paper's method (``ours`` or ``dawgen+paired+surgery``)
MARGIN = 10.0  # points ours must gain over pt on average
RECOVERY = 0.5  # share of the oracle's gain over pt ours must recover


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: ``rows[0] >= rows[1] + margin >= rows[2] ...`` on the average over tasks,
    or (``oracle``) the oracle-gap fraction of ``rows = (ours, pt, oracle)`` at least ``RECOVERY``."""

    text: str
    rows: tuple[str, ...]
    margin: float = 0.0
    oracle: bool = False


CLAIMS = (
    Claim(f"ours ≥ pt + {MARGIN:.0f} points on average", (OURS_ROW, PROMPT_TUNING), margin=MARGIN),
    Claim("ours ≥ SetFit", (OURS_ROW, "setfit")),
    Claim(
        f"ours recovers ≥ {RECOVERY:.0%} of the oracle's gain over pt",
        (OURS_ROW, PROMPT_TUNING, ORACLE_COUNTERPART),
        oracle=True,
    ),
    Claim("gradient surgery ≥ no surgery", (OURS_ROW, "dawgen+paired")),
    Claim("paired ≥ merged", (OURS_ROW, "dawgen+merged")),
    Claim("DawGen ≥ FewGen-style ≥ plain generator", (OURS_ROW, "fewgen+paired+surgery", "plain+paired+surgery")),
)


@dataclass(frozen=True)
class Verdict:
    """A claim checked on a run: its status, one line per metric, and the rows and tasks it compared."""

    claim: Claim
    rows: tuple[str, ...]
    status: str
    metrics: dict[str, str]  # metric label -> what was compared and how it came out
    tasks: list[str]


def _means(data: RunData, rows: Sequence[str], key: str) -> dict[str, list[float]]:
    """``task -> [mean of metric key over the seeds every row has, per row]`` for the tasks where every row
    has it on a common seed."""
    means = {}
    for task in data.tasks:
        runs = data.matched(rows, task)
        if not all(runs):
            continue
        values = [mean_metric(row_runs, key) for row_runs in runs]
        if None not in values:
            means[task] = values
    return means


def _chain(rows: Sequence[str], means: dict[str, list[float]], margin: float) -> tuple[bool, str]:
    """Whether the averages over tasks are ordered as ``rows`` (the first ``margin`` above the second)."""
    averages = [fmean(values[i] for values in means.values()) for i in range(len(rows))]
    margins = [margin] + [0.0] * (len(rows) - 2)
    held = all(a >= b + m for (a, b), m in zip(pairwise(averages), margins, strict=True))
    shown = " vs ".join(f"{row} {average:.1f}" for row, average in zip(rows, averages, strict=True))
    gap = f"; {rows[0]} - {rows[1]}: {averages[0] - averages[1]:+.1f} (needs ≥ {margin:+.1f})" if margin else ""
    return held, f"{shown}{gap}, over {', '.join(means)}"


def _oracle_gap(means: dict[str, list[float]]) -> tuple[bool | None, str]:
    """The oracle-gap fraction per task and its mean over the tasks where the oracle gains over pt."""
    fractions = {task: oracle_gap_fraction(*values) for task, values in means.items()}
    shown = ", ".join(
        f"{task} {'n/a (the oracle gains nothing)' if f is None else f'{f:.0%}'}" for task, f in fractions.items()
    )
    defined = [f for f in fractions.values() if f is not None]
    if not defined:
        return None, f"{shown}: not measured"
    mean = fmean(defined)
    return mean >= RECOVERY, f"{shown}; mean {mean:.0%} (needs ≥ {RECOVERY:.0%})"


def check(data: RunData, claim: Claim) -> Verdict:
    """``claim`` on ``data``: held when every metric the run measured holds, not measured when none is."""
    rows = tuple((data.ours() or row) if row == OURS_ROW else row for row in claim.rows)
    missing = [row for row in rows if row not in data.methods]
    if missing:
        lines = {label: "-" for label, _ in METRICS} | {
            METRICS[0][0]: f"the run has no results for {', '.join(missing)}"
        }
        return Verdict(claim, rows, NOT_MEASURED, lines, [])
    outcomes, lines, tasks = [], {}, []
    for label, key in METRICS:
        means = _means(data, rows, key)
        if not means:
            lines[label] = "not measured (no task has it for every row)"
            continue
        tasks = tasks or list(means)
        held, lines[label] = _oracle_gap(means) if claim.oracle else _chain(rows, means, claim.margin)
        if held is not None:
            outcomes.append(held)
    status = NOT_MEASURED if not outcomes else HELD if all(outcomes) else NOT_HELD
    return Verdict(claim, rows, status, lines, tasks)


def _seed_table(data: RunData, verdict: Verdict) -> Table:
    """Every seed's accuracy / balanced accuracy of the claim's rows, on the tasks it compared."""
    rows = []
    for task in verdict.tasks:
        for seed in data.seeds:
            runs = [next((r for r in data.scored(row, task) if r["seed"] == seed), None) for row in verdict.rows]
            cells = [
                "-"
                if run is None
                else f"{run['test']['accuracy']:.1f} / bal " + format_number(run["test"].get(BALANCED), "{:.1f}")
                for run in runs
            ]
            if any(cell != "-" for cell in cells):
                rows.append([task, str(seed), *cells])
    return Table(["task", "seed", *verdict.rows], rows)


def claims(data: RunData) -> list[Block]:
    """The paper's claims, each held / not held / not measured, then the per-seed numbers behind each."""
    verdicts = [check(data, claim) for claim in CLAIMS]
    blocks: list[Block] = [
        Heading(2, "The paper's claims"),
        Text(
            "Each claim compares the mean over the seeds that every row it names has (a row run on more seeds "
            "is compared on the shared ones only), averaged over the tasks where they share a seed, on accuracy "
            "and on balanced accuracy; it holds when it holds on every metric the run "
            f"measured. The oracle-gap fraction of a task is (ours - pt) / (oracle - pt), the oracle being "
            f"{ORACLE_COUNTERPART}; its mean is over the tasks where the oracle gains over pt. A claim whose "
            "rows the run lacks is not measured."
        ),
        Table(
            ["claim", "rows", "verdict", *(label for label, _ in METRICS)],
            [
                [v.claim.text, " vs ".join(v.rows), v.status, *(v.metrics[label] for label, _ in METRICS)]
                for v in verdicts
            ],
        ),
    ]
    for verdict in verdicts:
        if verdict.tasks:
            blocks += [Heading(3, f"{verdict.claim.text}: {verdict.status}, per seed"), _seed_table(data, verdict)]
    return blocks
