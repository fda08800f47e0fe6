"""Stage 2 without a model: settings, filters on hand-made cases, planning, part files, pools."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import DATA, needs_data

from dawgen.config import ConfigError, config_from_dict
from dawgen.data.example import DataError
from dawgen.data.sources import demo_dir, demo_task
from dawgen.synthesis.config import DedupKey, GenerationConfig, Reject
from dawgen.synthesis.filters import (
    char_similarity,
    edit_distance,
    is_near_copy,
    label_margins,
    mark_duplicates,
    mean_per_row,
    text_rejection,
    word_overlap,
)
from dawgen.synthesis.plan import (
    GAVE_UP_ATTEMPTS,
    GAVE_UP_POOL,
    GAVE_UP_ROUNDS,
    WorkItem,
    give_up_reason,
    make_batches,
    plan_round,
    share,
    slots_to_add,
)
from dawgen.synthesis.pool import distinct, find_pool_file, load_pool, read_pool
from dawgen.synthesis.writer import (
    LabelTally,
    PartWriter,
    check_run_settings,
    cut_partial_line,
    read_parts,
    tally,
)
from dawgen.tasks import get_task

FIRST = "The bus driver waited an extra minute for an elderly man."
LABELS = ("entailment", "not_entailment")


def test_config_defaults_validation_and_penalties():
    config = GenerationConfig()
    assert (config.per_label, config.top_p, config.temperature, config.max_new_tokens) == (5000, 0.9, 0.8, 50)
    assert not config.greedy and config.dedup is DedupKey.TEXT and config.copy_threshold == 0.9
    assert config.char_copy_threshold == 0.9 and config.consistency_filter == "off" and not config.needs_kshot_train
    assert (config.judge_confidence, config.relatedness_floor, config.relatedness_quantile) == (0.5, "off", 0.1)
    assert config.top_up_rounds is None and config.attempts_bound == 10 * 5000  # rounds go on, attempts are bounded
    assert GenerationConfig(per_label=4, max_attempts_per_label=7).attempts_bound == 7
    table = {"not_entailment": 1.5}
    assert (config.penalty_for("not_entailment", table), config.penalty_for("entailment", table)) == (1.5, 1.0)
    assert GenerationConfig(repetition_penalty=1.2).penalty_for("not_entailment", table) == 1.2
    assert config_from_dict(GenerationConfig, {"decoding": "greedy", "per_label": "7"}).greedy
    bad = [{"per_label": 0}, {"top_p": 0}, {"top_p": 1.5}, {"temperature": 0}, {"copy_threshold": 0},
           {"repetition_penalty": -1}, {"top_up_rounds": -1}, {"precision": "fp8"}, {"decoding": "beam"},
           {"first_sentence_tokens": 0}, {"per_label": 5, "max_attempts_per_label": 4}, {"char_copy_threshold": 0},
           {"char_copy_threshold": 1.2}, {"consistency_filter": "oracle"}, {"judge_confidence": 1.0},
           {"judge_confidence": 0}, {"relatedness_floor": "pool"}, {"relatedness_quantile": 1.0},
           {"relatedness_quantile": -0.1}, {"consistency_filter": "classifier"},
           {"consistency_filter": "judge", "consistency_classifier": "runs/x"}]  # fmt: skip
    for options in bad:
        with pytest.raises(ConfigError):
            config_from_dict(GenerationConfig, options)


@pytest.mark.parametrize(
    ("text", "finished", "first", "reason"),
    [
        (" The man was late.", False, FIRST, Reject.NO_EOS),
        ("   ", True, FIRST, Reject.EMPTY),
        ("", True, None, Reject.EMPTY),
        (" He waited.\nSentence 3: more", True, FIRST, Reject.NEWLINE),
        ("\nThe man was late.", True, FIRST, Reject.NEWLINE),
        (" " + FIRST, True, FIRST, Reject.COPY),
        (" the bus driver waited an extra minute, for an elderly man!", True, FIRST, Reject.COPY),  # case, punctuation
        (" The bus driver waited an extra minute for an old man.", True, FIRST, Reject.NEAR_COPY),  # words 0.83
        (" The bus driver waited for nobody.", True, FIRST, None),
        (" An elderly man was given an extra minute by the bus driver.", True, FIRST, None),  # a paraphrase
        (" A sentence of a single-sentence task.", True, None, None),
    ],
)
def test_per_sample_filters(text, finished, first, reason):
    assert text_rejection(text, finished, first, copy_threshold=0.9, char_copy_threshold=0.9) == reason
    if reason is Reject.NEAR_COPY:  # 1.0: only what the word sets catch
        assert text_rejection(text, finished, first, copy_threshold=0.9, char_copy_threshold=1.0) is None


SWAP = "The student council organised a clothing swap to reduce waste."


@pytest.mark.parametrize(
    ("second", "similarity", "near_copy"),
    [
        ("The student council organized a clothing swap to reduce waste.", 0.984, True),  # spelling: words 0.82
        ("the student council organised a clothing-swap to reduce waist.", 0.952, True),  # case, typos
        ("The school council organised a clothing swap to reduce waste.", 0.903, True),  # one word changed
        ("The student council organised a bake sale to reduce waste.", 0.823, False),  # two words: another event
        ("The student council organised a clothing swap.", 0.742, False),  # a shorter claim (entailment-like)
        ("To cut down on waste, the student council held a clothing exchange.", 0.313, False),  # a paraphrase
    ],
)
def test_near_copies_are_caught_by_character_similarity(second, similarity, near_copy):
    assert char_similarity(SWAP, second) == pytest.approx(similarity, abs=1e-3)
    assert is_near_copy(SWAP, second, 0.9) is near_copy
    assert word_overlap(SWAP, second) < 0.9  # none is caught by the word sets
    expected = Reject.NEAR_COPY if near_copy else None
    assert text_rejection(" " + second, True, SWAP, copy_threshold=0.9, char_copy_threshold=0.9) is expected


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0
    assert edit_distance("kitten", "sitting", limit=1) == 2 and edit_distance("kitten", "sitting", limit=3) == 3
    assert edit_distance("a" * 50, "b", limit=4) == 5  # the lengths alone tell
    assert char_similarity("", "") == 1.0 and char_similarity("abc", "") == 0.0


TEXTS = st.text(alphabet="ab cAB.", max_size=14)


@settings(max_examples=300, deadline=None)
@given(TEXTS, TEXTS, st.integers(min_value=0, max_value=15), st.floats(min_value=0.01, max_value=1.0))
def test_character_similarity_properties(a, b, limit, threshold):
    similarity = char_similarity(a, b)
    assert char_similarity(a, a) == 1.0 and similarity == char_similarity(b, a) and 0.0 <= similarity <= 1.0
    assert edit_distance(a, b, limit) == min(edit_distance(a, b), limit + 1)  # the band gives the same answer
    assert edit_distance(a, b) <= max(len(a), len(b)) and (edit_distance(a, b) == 0) == (a == b)
    assert is_near_copy(a, b, threshold) == (similarity >= threshold)


def test_word_overlap():
    assert word_overlap("A b c", "c B a.") == 1.0
    assert word_overlap("a b", "c d") == 0.0
    assert word_overlap("a b c", "a b d") == pytest.approx(2 / 4)
    assert word_overlap("...", "!") == 1.0  # no words on either side: nothing new was said


def record(index, label, text_b, text_a=FIRST, reject=None):
    return {"index": index, "label": label, "text_a": text_a, "text_b": text_b, "reject": reject}


def test_duplicates_keep_the_earliest_sample():
    records = [
        record(0, "entailment", "He waited."),
        record(1, "not_entailment", "He waited."),  # same text, other label: not a duplicate
        record(2, "entailment", "he  WAITED."),  # same words and case-folded: duplicate of 0
        record(3, "entailment", "He waited.", text_a="Another premise."),  # same text_b, other text_a
        record(4, "entailment", "He left.", reject="copy"),  # already rejected: not counted
        record(5, "entailment", "He left."),
    ]
    by_text = [dict(r) for r in records]
    mark_duplicates(by_text, DedupKey.TEXT)
    assert [r["reject"] for r in by_text] == [None, None, "duplicate", "duplicate", "copy", None]
    by_pair = [dict(r) for r in records]
    mark_duplicates(by_pair, DedupKey.PAIR)
    assert [r["reject"] for r in by_pair] == [None, None, "duplicate", None, "copy", None]
    unchanged = [dict(r) for r in records]
    mark_duplicates(unchanged, DedupKey.NONE)
    assert unchanged == records


def test_label_consistency_margins():
    means = torch.tensor([[-1.0, -2.0, -1.5], [-1.0, -2.0, -0.5], [-3.0, -3.0, -3.0]])
    margins = label_margins(means, torch.tensor([0, 1, 2]))
    assert margins.tolist() == pytest.approx([0.5, -1.5, 0.0])
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert mean_per_row(values, torch.tensor([0, 0, 2]), 3).tolist() == [[2.0, 3.0], [0.0, 0.0], [5.0, 6.0]]


def test_plan_rounds_top_up_what_the_filters_removed():
    empty = {label: LabelTally() for label in LABELS}
    first = plan_round(0, empty, LABELS, per_label=3, available_slots=None)
    assert [(i.index, i.label, i.slot) for i in first] == [(0, 0, 0), (2, 0, 1), (4, 0, 2), (1, 1, 0), (3, 1, 1),
                                                            (5, 1, 2)]  # fmt: skip
    assert [i.slot for i in plan_round(0, empty, LABELS, per_label=3, available_slots=2)] == [0, 1, 0, 1]
    kept_two = LabelTally(attempted=4, kept=[{}, {}])
    assert slots_to_add(kept_two, per_label=3) == 2  # one missing at a kept rate of 1/2
    assert slots_to_add(LabelTally(attempted=4, kept=[{}]), per_label=9) == 32  # kept 1 of 4: at most 4 x 8
    assert slots_to_add(LabelTally(attempted=4), per_label=3) == 3  # nothing kept: no rate, one more try
    assert slots_to_add(LabelTally(attempted=3, kept=[{}] * 3), per_label=3) == 0
    tallies = {"entailment": kept_two, "not_entailment": LabelTally(attempted=3, kept=[{}] * 3)}
    second = plan_round(1, tallies, LABELS, per_label=3, available_slots=5)
    assert [(i.label, i.slot, i.round) for i in second] == [(0, 4, 1)]  # capped by the pool's 5 sentences


def test_plan_rounds_stop_at_the_bound_on_attempts_and_say_why_a_label_gave_up():
    empty = {label: LabelTally() for label in LABELS}
    assert plan_round(0, empty, LABELS, 3, None, max_attempts=30) == plan_round(0, empty, LABELS, 3, None)
    poor = {"entailment": LabelTally(attempted=8, kept=[{}]), "not_entailment": LabelTally(attempted=3)}
    later = plan_round(5, poor, LABELS, per_label=3, available_slots=None, max_attempts=10)
    assert [(i.label, i.slot) for i in later] == [(0, 8), (0, 9), (1, 3), (1, 4), (1, 5)]  # 2 more of 8; 3 of 0
    topped = plan_round(5, poor, LABELS, per_label=3, available_slots=None, max_attempts=20, min_top_up=6)
    assert [(i.label, i.slot) for i in topped] == [*((0, s) for s in range(8, 16)), *((1, s) for s in range(3, 9))]
    done = {"entailment": LabelTally(attempted=3, kept=[{}] * 3), "not_entailment": LabelTally(attempted=3)}
    assert {i.label for i in plan_round(1, done, LABELS, 3, None, min_top_up=6)} == {1}  # a full label gets none
    assert plan_round(6, {"entailment": LabelTally(attempted=10), "not_entailment": LabelTally(attempted=10)},
                      LABELS, per_label=3, available_slots=None, max_attempts=10) == []  # fmt: skip
    assert give_up_reason(LabelTally(attempted=10, kept=[{}] * 3), 3, 5, 10) is None  # has them all
    assert give_up_reason(LabelTally(attempted=10, kept=[{}]), 3, None, 10) == GAVE_UP_ATTEMPTS
    assert give_up_reason(LabelTally(attempted=5, kept=[{}]), 3, 5, 10) == GAVE_UP_POOL
    assert give_up_reason(LabelTally(attempted=4, kept=[{}]), 3, 5, 10) == GAVE_UP_ROUNDS


def test_batches_are_single_label_length_sorted_and_shared_out():
    items = [WorkItem(slot * 2 + label, label, slot, 0) for slot in range(5) for label in range(2)]
    lengths = {0: 9, 1: 3, 2: 7, 3: 3, 4: 1}
    batches = make_batches(items, lengths.__getitem__, batch_size=2)
    assert [[(i.label, i.slot) for i in b] for b in batches] == [
        [(0, 4), (0, 1)], [(0, 3), (0, 2)], [(0, 0)], [(1, 4), (1, 1)], [(1, 3), (1, 2)], [(1, 0)],
    ]  # fmt: skip
    shares = [share(batches, rank, 2) for rank in range(2)]
    assert sorted(b[0].index for s in shares for b in s) == sorted(b[0].index for b in batches)
    assert share(batches, 0, 1) == batches


def test_part_files_survive_a_kill_mid_write(tmp_path):
    path = tmp_path / "parts" / "part-00000.jsonl"
    with PartWriter(path) as writer:
        writer.write([{"index": 0, "label": "a"}, {"index": 1, "label": "b"}])
    with path.open("a") as handle:
        handle.write('{"index": 2, "lab')  # what a kill during a write leaves
    assert sorted(read_parts(path.parent)) == [0, 1]  # readers ignore the partial line
    with PartWriter(path) as writer:  # a restarted writer cuts it first
        writer.write([{"index": 2, "label": "a"}])
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 1, 2]
    cut_partial_line(tmp_path / "missing.jsonl")  # nothing to do
    (path.parent / "part-00001.jsonl").write_text('{"index": 1, "label": "b"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_parts(path.parent)


def test_run_settings_guard_the_part_files(tmp_path):
    check_run_settings(tmp_path, {"seed": 1}, write=False)
    assert not (tmp_path / "run.json").exists()
    check_run_settings(tmp_path, {"seed": 1})
    check_run_settings(tmp_path, {"seed": 1})
    with pytest.raises(ValueError, match="seed"):
        check_run_settings(tmp_path, {"seed": 2})


def test_tally_counts_kept_and_rejected_in_index_order():
    records = [
        record(3, "entailment", "Same."),
        record(1, "entailment", "Same."),
        record(0, "not_entailment", "x", reject="copy"),
    ]
    tallies = tally(records, LABELS, DedupKey.TEXT)
    assert [r["index"] for r in tallies["entailment"].kept] == [1]
    assert tallies["entailment"].reasons == {"duplicate": 1} and tallies["not_entailment"].reasons == {"copy": 1}
    assert [r["index"] for r in tallies["entailment"].rejected] == [3]
    assert records[0]["reject"] is None  # the records themselves are not changed


def test_pool_files_and_order(tmp_path):
    task = demo_task()
    assert find_pool_file(task, None) == str(demo_dir() / "pool.txt")
    with pytest.raises(DataError, match="pool"):
        find_pool_file(get_task("RTE"), None)
    (tmp_path / "RTE" / "pool").mkdir(parents=True)
    jsonl = tmp_path / "RTE" / "pool" / "train.jsonl"
    jsonl.write_text('{"sentence1": "One.", "sentence2": "x", "label": "entailment"}\n{"sentence1": " One. "}\n'
                     '{"sentence1": "Two  words."}\n{"sentence1": "Three."}\n')  # fmt: skip
    assert find_pool_file(get_task("RTE"), tmp_path) == str(jsonl)
    assert read_pool(str(jsonl)) == ["One.", " One. ", "Two  words.", "Three."]
    assert distinct(["One.", " One. ", "One  .", "Two"]) == ["One.", "One  .", "Two"]
    pool = load_pool(get_task("RTE"), tmp_path, seed=1)
    assert sorted(pool.sentences) == ["One.", "Three.", "Two  words."]
    assert load_pool(get_task("RTE"), jsonl, seed=1) == pool != load_pool(get_task("RTE"), jsonl, seed=2)
    csv = tmp_path / "pool.csv"
    csv.write_text('premise,hypothesis\n"A, quoted one.",b\n')
    assert read_pool(str(csv)) == ["A, quoted one."] and read_pool(str(csv), "hypothesis") == ["b"]
    with pytest.raises(DataError):
        find_pool_file(task, tmp_path / "nowhere")


@needs_data
def test_shared_pools_read():
    assert len(load_pool(get_task("RTE"), DATA, seed=13).sentences) > 1000  # PPFT pool: {"0": {"text_a": ...}}
    sick = read_pool(str(DATA / "SICK" / "pool" / "train.tsv"))
    assert sick[0].startswith("A group of kids")  # sentence_A


def test_the_demo_may_reuse_its_pool_to_make_its_samples():
    from dawgen.api import demo_config

    config = demo_config().generation_config(13)
    assert (config.per_label, config.reuse_pool, config.attempts_bound, config.top_up_rounds) == (48, True, 960, None)
