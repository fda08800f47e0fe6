"""PFT and PFT + soft prompt: prompt tuning's loop with every weight trainable, on tiny models.

Pinned to fp32 (``precision="fp32"``): the loss is compared with a cross-entropy to fp32 tolerance.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tests_support import RTE_PAIRS

import dawgen.baselines.pft as pft_module
from dawgen.baselines import BASELINES, PFTConfig, run_pft, run_pft_prompt
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer, Trainable
from dawgen.constants import ADAPTER_DIR, CHECKPOINT_DIR, RESULT_FILE
from dawgen.models.loading import load_model
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAMILIES = [Family.DECODER, Family.MASKED, Family.SEQ2SEQ]
RTE = get_task("RTE")
EXAMPLES = RTE_PAIRS * 2


def small(**overrides) -> PFTConfig:
    settings = dict(
        batch_size=4, max_steps=4, eval_every=2, learning_rate=1e-3, num_virtual_tokens=3, precision="fp32",
        device="cpu",
    )  # fmt: skip
    return PFTConfig(**{**settings, **overrides})


def parameter_count(model) -> int:
    return sum(param.numel() for param in model.parameters())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@pytest.mark.parametrize("soft_prompt", [False, True], ids=["pft", "pft+prompt"])
def test_pft_trains_the_backbone(tiny_model_dirs, monkeypatch, family, soft_prompt):
    loaded = load_model(str(tiny_model_dirs[family]))
    monkeypatch.setattr(pft_module, "training_copy", lambda model: model)  # train the model we can inspect
    before = {name: param.detach().clone() for name, param in loaded.model.named_parameters()}
    result = run_pft(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, small(soft_prompt=soft_prompt), show_progress=False)
    unchanged = [name for name, param in loaded.model.named_parameters() if torch.equal(before[name], param)]
    # every weight trains; only the self-attention of T5's one-token decoder has nothing to attend to,
    # so its queries, keys and position bias get no gradient
    assert all(name.startswith("decoder.") and ".SelfAttention." in name for name in unchanged)
    assert len(unchanged) < 0.15 * len(before)
    prompt_size = 3 * loaded.embedding_dim if soft_prompt else 0
    assert result["trainable_parameters"] == parameter_count(loaded.model) + prompt_size
    assert result["method"] == ("pft+prompt" if soft_prompt else "pft")
    assert all(math.isfinite(value) for value in (*result["dev"].values(), *result["test"].values()))


def test_pft_prompt_runs_on_a_copy_and_saves_no_adapter(tiny_model_dirs, tmp_path):
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    before = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    result = BASELINES["pft+prompt"](loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, small(), tmp_path, False)
    assert all(torch.equal(before[name], value) for name, value in loaded.model.state_dict().items())
    assert result["config"]["soft_prompt"] is True and result["method"] == "pft+prompt"
    assert json.loads((tmp_path / RESULT_FILE).read_text()) == result
    assert not (tmp_path / ADAPTER_DIR).exists() and not (tmp_path / CHECKPOINT_DIR).exists()
    assert run_pft_prompt(loaded, RTE, EXAMPLES, EXAMPLES, config=small(), out_dir=tmp_path) == result


def test_pft_loss_is_the_verbalizer_cross_entropy(tiny_model_dirs):
    """PFT's training loss is the cross-entropy over the label words' logits of the templated input."""
    loaded = load_model(str(tiny_model_dirs[Family.MASKED]))
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    trainer = PromptTrainer(scorer, small().tune_config(), trainable=Trainable(False, 1e-3))
    items = scorer.encoder.encode_all(EXAMPLES[:4])
    logits = scorer.predict_logits(items)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([item.label for item in items]))
    torch.testing.assert_close(trainer.loss(items).detach(), expected)
    assert trainer.prompt is None and trainer.num_trainable == parameter_count(loaded.model)


def test_trainable_sets_are_checked(tiny_model_dirs):
    with pytest.raises(ValueError, match="nothing to train"):
        Trainable(prompt=False)
    with pytest.raises(ValueError, match="backbone_learning_rate"):
        Trainable(backbone_learning_rate=0.0)
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    paired = PromptTuneConfig(num_virtual_tokens=2, combine="paired", precision="fp32")
    with pytest.raises(ValueError, match="paired steps"):
        PromptTrainer(scorer, paired, trainable=Trainable(backbone_learning_rate=1e-5))
    with pytest.raises(ValueError, match="start prompt has shape"):
        PromptTrainer(scorer, small().tune_config(), start_prompt=torch.zeros(5, loaded.embedding_dim))


def test_pft_config_is_checked():
    with pytest.raises(ValueError, match="prompt_learning_rate"):
        PFTConfig(prompt_learning_rate=0)
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PFTConfig(soft_prompt=True, num_virtual_tokens=0)
    tune = PFTConfig(prompt_init="random", prompt_learning_rate=0.01).tune_config()
    assert tune.prompt_init.value == "random" and tune.learning_rate == 0.01 and tune.optimizer.value == "adamw"
