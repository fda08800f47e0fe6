"""The paper's claims in the report (``reporting.claims``): held, not held or not measured, on constructed
results; the oracle-gap fraction by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_reporting import write_json

from dawgen.reporting import load_run, write_report


def claims_run(tmp_path: Path, scores: dict[tuple[str, str], tuple[tuple[float, float], ...]]):
    """A run of one record per (task, method, seed); ``scores`` holds (accuracy, balanced accuracy) per seed."""
    records = [
        {"task": task, "seed": seed, "method": method, "test": {"accuracy": acc, "balanced_accuracy": bal}}
        for (task, method), per_seed in scores.items()
        for seed, (acc, bal) in zip((13, 42), per_seed, strict=True)
    ]
    methods = list(dict.fromkeys(method for _, method in scores))
    write_json(tmp_path / "results.json", {"tasks": ["RTE", "MRPC"], "seeds": [13, 42], "methods": methods,
                                           "records": records})  # fmt: skip
    return load_run(tmp_path)


def test_each_claim_is_held_not_held_or_not_measured(tmp_path: Path):
    from dawgen.reporting.claims import CLAIMS, HELD, NOT_HELD, NOT_MEASURED, check

    scores = {  # (task, method) -> (accuracy, balanced accuracy) of seeds 13 and 42
        ("RTE", "pt"): ((50, 50), (52, 50)), ("MRPC", "pt"): ((60, 50), (60, 52)),
        ("RTE", "ours"): ((62, 56), (64, 58)), ("MRPC", "ours"): ((70, 60), (72, 60)),  # +12 acc, +8 bal
        ("RTE", "setfit"): ((55, 55), (55, 55)), ("MRPC", "setfit"): ((60, 55), (60, 55)),
        ("RTE", "oracle+paired+surgery"): ((71, 70), (73, 70)), ("MRPC", "oracle+paired+surgery"): ((66, 50), (66, 52)),
        ("RTE", "dawgen+paired"): ((70, 60), (70, 60)), ("MRPC", "dawgen+paired"): ((70, 60), (70, 60)),
        ("RTE", "dawgen+merged"): ((60, 55), (60, 55)), ("MRPC", "dawgen+merged"): ((60, 55), (60, 55)),
        ("RTE", "fewgen+paired+surgery"): ((55, 55), (55, 55)), ("MRPC", "fewgen+paired+surgery"): ((55, 55), (55, 55)),
    }  # fmt: skip
    data = claims_run(tmp_path, scores)
    names = ["pt", "setfit", "oracle", "dawgen+paired", "dawgen+merged", "chain"]
    verdicts = {name: check(data, claim) for name, claim in zip(names, CLAIMS, strict=True)}
    # ours - pt on average: accuracy (12 + 11) / 2 = 11.5 >= 10, balanced (7 + 9) / 2 = 8 < 10: not held
    assert (
        verdicts["pt"].status == NOT_HELD and "ours - pt: +11.5 (needs ≥ +10.0)" in verdicts["pt"].metrics["accuracy"]
    )
    assert "ours - pt: +8.0" in verdicts["pt"].metrics["balanced accuracy"]
    assert verdicts["setfit"].status == HELD and verdicts["dawgen+merged"].status == HELD
    assert verdicts["dawgen+paired"].status == NOT_HELD  # accuracy 67 < 70
    # no plain row: not measured, though fewgen is there
    chain = verdicts["chain"]
    assert chain.status == NOT_MEASURED and "plain+paired+surgery" in chain.metrics["accuracy"] and not chain.tasks
    # accuracy: RTE (63 - 51) / (72 - 51) = 57%, MRPC (71 - 60) / (66 - 60) = 183%: mean 120%, held;
    # balanced: RTE (57 - 50) / (70 - 50) = 35%, MRPC: the oracle (51) gains nothing over pt (51): mean 35%, not held
    oracle = verdicts["oracle"]
    assert oracle.metrics["accuracy"] == "RTE 57%, MRPC 183%; mean 120% (needs ≥ 50%)"
    assert oracle.metrics["balanced accuracy"] == "RTE 35%, MRPC n/a (the oracle gains nothing); mean 35% (needs ≥ 50%)"
    assert oracle.status == NOT_HELD


def test_the_oracle_gap_fraction_by_hand_and_a_claim_held_on_both_metrics(tmp_path: Path):
    from dawgen.reporting.claims import CLAIMS, HELD, NOT_MEASURED, check
    from dawgen.reporting.sections import oracle_gap_fraction

    assert oracle_gap_fraction(56.0, 50.0, 60.0) == pytest.approx(0.6)
    assert oracle_gap_fraction(40.0, 50.0, 60.0) == pytest.approx(-1.0)  # worse than pt: a negative share
    assert oracle_gap_fraction(55.0, 50.0, 50.0) is None and oracle_gap_fraction(55.0, 50.0, 45.0) is None
    scores = {  # the paper's method under its recipe name; the oracle gains nothing on balanced accuracy anywhere
        ("RTE", "pt"): ((50, 50), (50, 50)), ("RTE", "dawgen+paired+surgery"): ((56, 60), (56, 60)),
        ("RTE", "oracle+paired+surgery"): ((60, 50), (60, 50)),
    }  # fmt: skip
    data = claims_run(tmp_path, scores)
    oracle = check(data, CLAIMS[2])
    assert oracle.rows == ("dawgen+paired+surgery", "pt", "oracle+paired+surgery")
    assert oracle.metrics["accuracy"] == "RTE 60%; mean 60% (needs ≥ 50%)"
    assert oracle.metrics["balanced accuracy"].endswith(": not measured")
    assert oracle.status == HELD  # held on the one metric it measured
    empty = claims_run(
        tmp_path, {("RTE", "pt"): ((50, 50), (50, 50)), ("RTE", "oracle+paired+surgery"): ((50, 50),) * 2}
    )
    assert check(empty, CLAIMS[2]).status == NOT_MEASURED  # no ours
    text = write_report(tmp_path)[0].read_text()
    section = text.split("## The paper's claims")[1].split("\n## ")[0]
    assert (
        "| ours recovers ≥ 50% of the oracle's gain over pt | ours vs pt vs oracle+paired+surgery | not measured |"
        in section
    )


def test_rows_are_compared_over_the_seeds_they_share(tmp_path: Path):
    """A row run on one seed is compared with the others on that seed only, in the claims, the oracle recovery
    and the headline table's seed count; ``build_summary`` gives the same from the records alone."""
    from dawgen.reporting import RunData, build_summary
    from dawgen.reporting.claims import CLAIMS, HELD, NOT_HELD, check
    from dawgen.reporting.document import to_markdown
    from dawgen.reporting.sections import oracle_recovery

    def record(method: str, seed: int, acc: float, bal: float) -> dict:
        return {"task": "RTE", "seed": seed, "method": method, "test": {"accuracy": acc, "balanced_accuracy": bal}}

    records = [
        record("pt", 13, 50, 50), record("pt", 42, 60, 60),
        record("ours", 13, 70, 70), record("ours", 42, 58, 58),  # mean 64 over both seeds, 58 on seed 42
        record("dawgen+merged", 42, 59, 59),  # seed 42 only: below the two-seed mean of ours, above its seed 42
        record("oracle+paired+surgery", 13, 90, 90), record("oracle+paired+surgery", 42, 80, 80),
    ]  # fmt: skip
    data = RunData(tmp_path, {}, {"methods": []}, records)
    assert [[r["seed"] for r in runs] for runs in data.matched(("ours", "dawgen+merged"), "RTE")] == [[42], [42]]
    assert data.matched(("ours", "setfit"), "RTE") == [[], []]
    merged = check(data, CLAIMS[4])
    assert merged.status == NOT_HELD and merged.metrics["accuracy"].startswith("ours 58.0 vs dawgen+merged 59.0")
    # ours vs pt over both seeds: +9 < 10; recovery (64 - 55) / (85 - 55) = 30%
    assert check(data, CLAIMS[0]).metrics["accuracy"].startswith("ours 64.0 vs pt 55.0")
    recovery = oracle_recovery(data)[-1]
    assert ["RTE", "ours", "oracle+paired+surgery", "accuracy", "55.0", "64.0", "85.0", "30%"] in recovery.rows
    summary = to_markdown(build_summary(records, "RTE in parts", ["pt", "ours"]), tmp_path)
    assert summary.index("| pt |") < summary.index("| ours |") < summary.index("| dawgen+merged |")
    assert "59.0 (0.0) / bal 59.0 (0.0) [1 seed]" in summary and "64.0 (8.5) / bal 64.0 (8.5) |" in summary
    assert "| paired ≥ merged | ours vs dawgen+merged | not held |" in summary
    assert check(RunData(tmp_path, {}, {}, [*records[:4], record("setfit", 13, 60, 60)]), CLAIMS[1]).status == HELD
