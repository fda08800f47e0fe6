"""PPT-style prompt pre-training: pair construction and its labels, pre-training, tuning from it.

Pinned to fp32 (``precision="fp32"``), like the other tiny-model training tests.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dawgen.baselines import PPTConfig, TransferConfig, run_ppt, run_transfer
from dawgen.baselines.ppt import PRETRAIN_DIR, PairType, make_pairs, pair_labels, split_sentences
from dawgen.constants import ADAPTER_DIR, RESULT_FILE
from dawgen.data.example import Example
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTE, MRPC, MNLI = get_task("RTE"), get_task("MRPC"), get_task("MNLI")
EXAMPLES = [
    Example("A man is cutting bread in the kitchen.", "entailment", "A man is in the kitchen."),
    Example("The train left the station at noon.", "not_entailment", "The train arrived at noon."),
] * 4
# three documents; sentence "dK sJ" is sentence J of document K
DOCS = [
    "D1 s1 is here. D1 s2 is here! D1 s3 is here? D1 s4 is here. D1 s5 is here.",
    "D2 s1 is here. D2 s2 is here. D2 s3 is here.",
    "D3 s1 is here. D3 s2 is here.",
]


def where(sentence: str) -> tuple[int, int]:
    """(document, position) of a sentence of DOCS."""
    doc, position = sentence.split()[:2]
    return int(doc[1:]), int(position[1:])


def test_sentences_are_cut_at_end_marks_before_a_capital():
    assert split_sentences('He said "Go." Then he left! Did he? 3 dogs ran. e.g. this') == [
        'He said "Go."',
        "Then he left!",
        "Did he?",
        "3 dogs ran. e.g. this",
    ]
    assert split_sentences(DOCS[0])[2] == "D1 s3 is here?"


def test_pair_types_map_to_labels_by_label_word():
    assert pair_labels(RTE) == {PairType.NEXT: "entailment", PairType.RANDOM: "not_entailment"}
    assert pair_labels(MRPC) == {PairType.NEXT: "1", PairType.RANDOM: "0"}  # "1" is "Yes" (paraphrase)
    assert pair_labels(MNLI) == {
        PairType.NEXT: "entailment", PairType.FAR: "neutral", PairType.RANDOM: "contradiction"
    }  # fmt: skip
    odd = dataclasses.replace(RTE, label_words={"entailment": "Right", "not_entailment": "Wrong"})
    with pytest.raises(ValueError, match="set next_label, random_label"):
        pair_labels(odd)
    assert pair_labels(odd, next_label="entailment", random_label="not_entailment")[PairType.NEXT] == "entailment"
    with pytest.raises(ValueError, match="distinct labels"):
        pair_labels(odd, next_label="entailment", random_label="entailment")
    single = dataclasses.replace(RTE, pair=False, templates={Family.DECODER: "{text_a}\nAnswer:{answer}"})
    with pytest.raises(ValueError, match="sentence-pair task"):
        pair_labels(single)


@pytest.mark.parametrize("task", [RTE, MNLI], ids=["2 labels", "3 labels"])
def test_pairs_have_the_documented_labels(task):
    labels = pair_labels(task)
    pairs = make_pairs(DOCS, labels, per_type=100, seed=0, min_gap=2)
    assert set(pairs) == set(labels) and len({len(group) for group in pairs.values()}) == 1  # balanced
    for kind, group in pairs.items():
        for pair in group:
            assert pair.label == labels[kind]
            (doc_a, pos_a), (doc_b, pos_b) = where(pair.text_a), where(pair.text_b)
            if kind is PairType.NEXT:
                assert doc_a == doc_b and pos_b == pos_a + 1
            elif kind is PairType.FAR:
                assert doc_a == doc_b and abs(pos_b - pos_a) >= 2
            else:
                assert doc_a != doc_b
    # next: 4 + 2 + 1 = 7 pairs; far (gap 2): the 5 sentences of D1, the first and last of D2 = 7;
    # random: one per sentence = 10; every type gets the smallest count
    assert len(pairs[PairType.NEXT]) == 7
    assert make_pairs(DOCS, labels, per_type=100, seed=0) == pairs  # seeded
    assert len(make_pairs(DOCS, labels, per_type=3, seed=0)[PairType.NEXT]) == 3


def test_text_that_cannot_give_every_pair_type_is_refused():
    with pytest.raises(ValueError, match="no random pairs"):
        make_pairs([DOCS[0]], pair_labels(RTE), per_type=10, seed=0)
    with pytest.raises(ValueError, match="no far pairs"):
        make_pairs([DOCS[2], "One. Two."], pair_labels(MNLI), per_type=10, seed=0)


def pool_file(tmp_path):
    subjects = ["The man", "A woman", "The child", "My friend", "The teacher", "A dog", "The cat", "Our team"]
    verbs = ["reads a book", "writes a letter", "sees the film", "takes the food", "asks the question"]
    docs = [" ".join(f"{s} {v} today." for v in verbs[i % 5 :] + verbs[: i % 5]) for i, s in enumerate(subjects)]
    path = tmp_path / "pool.txt"
    path.write_text("\n".join(docs) + "\n")
    return path


def small(pool, **overrides) -> PPTConfig:
    settings = dict(
        pool=str(pool), num_virtual_tokens=4, batch_size=4, max_steps=4, eval_every=2, pretrain_steps=4,
        pairs_per_type=12, dev_pairs_per_type=2, precision="fp32", device="cpu",
    )  # fmt: skip
    return PPTConfig(**{**settings, **overrides})


def test_ppt_pretrains_then_tunes_and_never_touches_the_backbone(loaded, tmp_path):
    before = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    config = small(pool_file(tmp_path))
    result = run_ppt(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, config, tmp_path / "run", show_progress=False)
    assert all(torch.equal(before[name], value) for name, value in loaded.model.state_dict().items())
    assert result["method"] == "ppt" and all(math.isfinite(v) for v in result["test"].values())
    pretrain = result["pretrain"]
    assert pretrain["pairs"] == 2 * 12 and pretrain["pair_labels"] == {"next": "entailment", "random": "not_entailment"}
    adapter = tmp_path / "run" / PRETRAIN_DIR / ADAPTER_DIR
    assert pretrain["adapter"] == str(adapter) and (adapter / "adapter_config.json").exists()
    assert (tmp_path / "run" / ADAPTER_DIR).exists() and (tmp_path / "run" / RESULT_FILE).exists()
    assert run_ppt(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, config, tmp_path / "run") == result  # finished
    # the pre-trained prompt starts any prompt tuning through the transfer mechanism
    transfer = TransferConfig(
        source_adapter=str(adapter), num_virtual_tokens=4, batch_size=4, max_steps=2, eval_every=2, precision="fp32",
        device="cpu",
    )  # fmt: skip
    assert run_transfer(loaded, RTE, EXAMPLES, EXAMPLES, config=transfer, show_progress=False)["method"] == "transfer"


def test_ppt_needs_a_pool_and_enough_text(loaded, tmp_path):
    with pytest.raises(ValueError, match="pool"):
        run_ppt(loaded, RTE, EXAMPLES, EXAMPLES)
    with pytest.raises(ValueError, match="pretrain_steps"):
        small("x", pretrain_steps=0)
    with pytest.raises(ValueError, match="too little text"):
        run_ppt(loaded, RTE, EXAMPLES, EXAMPLES, config=small(pool_file(tmp_path), dev_pairs_per_type=100))


def test_ppt_pretrains_and_transfers_a_prefix(loaded, tmp_path):
    from dawgen.classifier.adapter import peft_kind
    from dawgen.classifier.config import PeftKind

    result = run_ppt(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, small(pool_file(tmp_path), peft="prefix"),
                     tmp_path / "run", show_progress=False)  # fmt: skip
    assert result["peft"] == "prefix" and all(math.isfinite(v) for v in result["test"].values())
    assert peft_kind(result["pretrain"]["adapter"]) is peft_kind(tmp_path / "run" / ADAPTER_DIR) is PeftKind.PREFIX
    with pytest.raises(ValueError, match="not lora"):
        small("x", peft="lora")
