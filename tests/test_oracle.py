"""The gold-data oracle: a label-balanced sample of the gold-labelled pool that never holds a k-shot row."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests_support import DATA, needs_data

from dawgen.config import ConfigError
from dawgen.data.example import DataError, Example
from dawgen.data.oracle import (
    ORACLE_LABEL,
    find_labelled_pool,
    kshot_folders,
    kshot_rows,
    pair_key,
    sample_oracle,
)
from dawgen.data.readers import write_examples_tsv
from dawgen.data.sources import load_labelled
from dawgen.pipeline import RunConfig, parse_method
from dawgen.tasks import get_task

RTE = get_task("RTE")


def pairs(prefix: str, label: str, n: int) -> list[Example]:
    return [Example(f"{prefix} premise {i}.", label, f"{prefix} hypothesis {i}.") for i in range(n)]


def rte_root(folder: Path) -> tuple[Path, list[Example]]:
    """A data root with two k-shot seeds of RTE and a pool holding every k-shot row (respaced, recased)."""
    kshot = []
    for seed in (13, 42):
        split = folder / "RTE" / "k-shot" / f"16-{seed}"
        for name in ("train", "dev"):
            rows = [e for label in RTE.labels for e in pairs(f"{name} {seed} {label}", label, 3)]
            write_examples_tsv(split / f"{name}.tsv", rows)
            kshot += rows
    fresh = [e for label in RTE.labels for e in pairs(f"pool {label}", label, 20)]
    disguised = [Example("  " + e.text_a.upper(), e.label, e.text_b.replace(" ", "  ")) for e in kshot]
    pool = {str(i): {"text_a": e.text_a, "text_b": e.text_b, "label": e.label}
            for i, e in enumerate(disguised + fresh + kshot)}  # fmt: skip
    (folder / "RTE" / "pool").mkdir(parents=True)
    (folder / "RTE" / "pool" / "train.json").write_text(json.dumps(pool))
    return folder, kshot


def test_the_oracle_never_sees_a_kshot_row_of_any_seed_and_counts_per_label(tmp_path):
    root, kshot = rte_root(tmp_path)
    folders = kshot_folders(RTE, root)
    assert [f.name for f in folders] == ["16-13", "16-42"]
    pool = load_labelled(RTE, find_labelled_pool(RTE, root))
    exclude = kshot_rows(RTE, folders)
    assert {pair_key(e) for e in exclude} == {pair_key(e) for e in kshot}
    oracle = sample_oracle(RTE, pool, exclude, per_label=8, seed=13)
    forbidden = {pair_key(e) for e in kshot}
    assert not [e for e in oracle.examples if pair_key(e) in forbidden]
    assert Counter(e.label for e in oracle.examples) == {label: 8 for label in RTE.labels}
    summary = oracle.summary
    assert summary["source"] == ORACLE_LABEL and summary["removed"]["kshot_rows"] == 2 * len(kshot)
    assert summary["available_per_label"] == {label: 20 for label in RTE.labels} and not summary["short"]
    assert sample_oracle(RTE, pool, exclude, 8, seed=13).examples == oracle.examples  # the seed fixes the draw
    assert sample_oracle(RTE, pool, exclude, 8, seed=42).examples != oracle.examples


def test_a_short_label_caps_every_label_and_an_empty_one_fails():
    pool = pairs("a", "entailment", 10) + pairs("b", "not_entailment", 3) + [Example("same.", "entailment", "same.")]
    oracle = sample_oracle(RTE, pool, [], per_label=5, seed=1)
    assert Counter(e.label for e in oracle.examples) == {"entailment": 3, "not_entailment": 3}
    assert oracle.summary["short"] and oracle.summary["removed"]["verbatim_copies"] == 1
    duplicates = sample_oracle(RTE, pool + pool[:2], [], per_label=2, seed=1).summary["removed"]["duplicates"]
    assert duplicates == 2
    with pytest.raises(DataError, match=r"no row of label\(s\) \['not_entailment'\] left"):
        sample_oracle(RTE, pool, pairs("b", "not_entailment", 3), per_label=5, seed=1)


def test_the_labelled_pool_is_found_under_a_data_root_and_a_sentence_list_is_refused(tmp_path):
    root, _ = rte_root(tmp_path)
    assert find_labelled_pool(RTE, root) == str(root / "RTE" / "pool" / "train.json")
    (tmp_path / "sentences.txt").write_text("One sentence.\n")
    with pytest.raises(DataError, match="needs a pool with gold labels"):
        find_labelled_pool(RTE, tmp_path / "sentences.txt")
    with pytest.raises(DataError, match="no labelled pool found"):
        find_labelled_pool(RTE, tmp_path / "RTE" / "k-shot")
    assert kshot_folders(RTE, root / "RTE" / "k-shot" / "16-13") == [root / "RTE" / "k-shot" / "16-13"]
    assert kshot_folders(RTE, root / "RTE" / "pool" / "train.json") == []


def test_oracle_methods_parse_and_their_options_are_checked():
    method = parse_method("oracle+paired+surgery")
    assert (method.oracle, method.variant, method.combine, method.surgery) == (True, None, "paired", True)
    assert method.needs_synthetic and method.source == "oracle" and parse_method("ours").source == "dawgen"
    assert parse_method("oracle+merged").combine == "merged" and parse_method("pt").source is None
    with pytest.raises(ConfigError, match="surgery needs paired"):
        parse_method("oracle+merged+surgery")
    with pytest.raises(ConfigError, match=r"<plain\|fewgen\|dawgen\|oracle>"):
        parse_method("oracle+real")
    with pytest.raises(ConfigError, match="oracle: unknown option"):
        RunConfig(tasks=["RTE"], data="x", methods=["oracle+merged"], oracle={"pools": "x"})
    assert RunConfig(tasks=["RTE"], data="x", methods=["pt"], oracle={"pool": "x"}).oracle == {"pool": "x"}
    config = RunConfig(tasks=["RTE"], data="x", methods=["oracle+merged"], oracle={"pool": "data/{task}/pool.json"})
    with pytest.raises(DataError, match=r"data/RTE/pool\.json"):
        config.oracle_pool(RTE)


@needs_data
@pytest.mark.parametrize("task", ["RTE", "SICK"])
def test_on_the_shared_data_no_kshot_row_of_any_seed_reaches_the_oracle(task):
    spec = get_task(task)
    config = RunConfig(tasks=[task], data=str(DATA), methods=["oracle+paired+surgery"])
    pool = load_labelled(spec, config.oracle_pool(spec))
    exclude = kshot_rows(spec, kshot_folders(spec, DATA))
    assert len(exclude) == len(spec.labels) * 32 * 5  # 5 seeds x (16 train + 16 dev) per label
    oracle = sample_oracle(spec, pool, exclude, per_label=80, seed=13)
    forbidden = {pair_key(e) for e in exclude}
    assert oracle.summary["removed"]["kshot_rows"] > 0 and not any(pair_key(e) in forbidden for e in oracle.examples)
    assert Counter(e.label for e in oracle.examples) == {label: 80 for label in spec.labels}
