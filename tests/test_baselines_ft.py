"""FT (classification head, every weight trains) on tiny models of all three families, and the registry.

Pinned to fp32 (``precision="fp32"``): the batched-vs-alone and loss tolerances are fp32's.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tests_support import RTE_PAIRS

import dawgen.baselines.ft as ft_module
from dawgen.baselines import BASELINES, FTConfig, run_ft
from dawgen.baselines.ft import HeadScorer
from dawgen.config import ConfigError, config_from_dict
from dawgen.constants import ADAPTER_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.models.loading import load_model
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAMILIES = [Family.DECODER, Family.MASKED, Family.SEQ2SEQ]
RTE = get_task("RTE")
EXAMPLES = RTE_PAIRS * 2


def small(**overrides) -> FTConfig:
    settings = dict(batch_size=4, max_steps=6, eval_every=3, learning_rate=1e-3, precision="fp32", device="cpu")
    return FTConfig(**{**settings, **overrides})


def finite(metrics: dict[str, float]) -> bool:
    return bool(metrics) and all(math.isfinite(value) for value in metrics.values())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
def test_ft_trains_every_weight_of_the_body(tiny_model_dirs, monkeypatch, family):
    loaded = load_model(str(tiny_model_dirs[family]))
    monkeypatch.setattr(ft_module, "training_copy", lambda model: model)  # train the model we can inspect
    body = loaded.model.get_encoder() if family is Family.SEQ2SEQ else loaded.model.base_model
    before = {name: param.detach().clone() for name, param in body.named_parameters()}
    result = run_ft(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, small(), show_progress=False)
    unchanged = [name for name, param in body.named_parameters() if torch.equal(before[name], param)]
    assert not unchanged
    assert result["method"] == "ft" and finite(result["test"]) and finite(result["dev"])
    assert result["trainable_parameters"] == sum(p.numel() for p in before.values()) + 2 * (body.config.hidden_size + 1)


def test_ft_leaves_the_callers_model_alone_and_writes_a_run(tiny_model_dirs, tmp_path):
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    before = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    result = run_ft(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, small(), out_dir=tmp_path, show_progress=False)
    assert all(torch.equal(before[name], value) for name, value in loaded.model.state_dict().items())
    assert not any(param.requires_grad for param in loaded.model.parameters())
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved == result and saved["config"]["learning_rate"] == 1e-3
    assert {"method", "task", "model", "dev", "test", "trainable_parameters", "train_seconds"} <= set(saved)
    assert saved["compute"]["precision"] == "fp32" and saved["compute"]["device"] == "cpu"  # pinned fp32
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert not (tmp_path / ADAPTER_DIR).exists()
    assert run_ft(loaded, RTE, EXAMPLES, EXAMPLES, config=small(), out_dir=tmp_path) == saved  # finished: reused
    with pytest.raises(ValueError, match="other settings"):
        run_ft(loaded, RTE, EXAMPLES, EXAMPLES, config=small(max_steps=4), out_dir=tmp_path)


def test_ft_ends_with_the_best_weights_on_dev(tiny_model_dirs):
    """Dev has the training texts with the other label: it is best before training goes far, and the
    test scores (on the same set) are those of the best step's weights, not the last step's."""
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    other = {"entailment": "not_entailment", "not_entailment": "entailment"}
    flipped = [Example(e.text_a, other[e.label], e.text_b) for e in EXAMPLES]
    config = small(eval_every=2, learning_rate=1e-2)
    result = run_ft(loaded, RTE, EXAMPLES, flipped, flipped, config, show_progress=False)
    assert result["best_step"] == 2
    assert result["test"]["loss"] == pytest.approx(result["dev"]["dev_loss"], rel=1e-5)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
def test_head_reads_the_same_state_alone_and_in_a_padded_batch(tiny_model_dirs, family):
    loaded = load_model(str(tiny_model_dirs[family]))
    scorer = HeadScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu", seed=0)
    items = scorer.encoder.encode_all(EXAMPLES[:4])
    assert len({len(item.input_ids) for item in items}) > 1  # padding happens
    if family is Family.DECODER:
        assert all(item.input_ids[-1] == loaded.tokenizer.eos_token_id for item in items)
    if family is Family.MASKED:
        assert all(item.input_ids[0] == loaded.tokenizer.cls_token_id for item in items)
    batched = scorer.predict_logits(items)
    alone = torch.cat([scorer.predict_logits([item]) for item in items])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="no soft prompt"):
        scorer.label_logits(scorer.collate(items), torch.zeros(2, loaded.embedding_dim))


def test_ft_config_is_checked():
    with pytest.raises(ValueError, match="learning_rate"):
        FTConfig(learning_rate=0)
    with pytest.raises(ValueError, match="batch_size"):
        FTConfig(batch_size=0)
    with pytest.raises(ConfigError, match="max_steps"):
        config_from_dict(FTConfig, {"max_steps": "many"})
    assert FTConfig().tune_config().optimizer.value == "adamw"


def test_registry_names_every_baseline_with_its_settings():
    assert list(BASELINES) == ["ft", "pft", "pft+prompt", "transfer", "ppt", "optima", "setfit", "setfit+syn"]
    for name, baseline in BASELINES.items():
        assert callable(baseline) and callable(baseline.run) and baseline.description, name
    assert config_from_dict(BASELINES["pft+prompt"].config, {"max_steps": 5}).max_steps == 5
    assert not BASELINES["setfit"].uses_classifier
