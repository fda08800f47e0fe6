"""Transfer-initialised prompt tuning (SPoT): the prompt starts as a saved adapter's; mismatches stop.

Pinned to fp32 (``precision="fp32"``), like the other tiny-model training tests.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from dawgen.baselines import TransferConfig, load_source_prompt, run_transfer
from dawgen.classifier.adapter import load_prompt, save_prompt
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.constants import ADAPTER_DIR, RESULT_FILE
from dawgen.data.example import Example
from dawgen.models.loading import load_model
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTE = get_task("RTE")
EXAMPLES = [
    Example("A man is cutting bread in the kitchen.", "entailment", "A man is in the kitchen."),
    Example("The train left the station at noon.", "not_entailment", "The train arrived at noon."),
] * 4


@pytest.fixture
def source(loaded, tmp_path):
    """A saved adapter of 'another task' on the tiny decoder: 4 virtual tokens."""
    prompt = torch.randn(4, loaded.embedding_dim, generator=torch.Generator().manual_seed(7))
    save_prompt(prompt, loaded.family, loaded.name, tmp_path / "source")
    return tmp_path / "source", prompt


def small(adapter, **overrides) -> TransferConfig:
    settings = dict(
        source_adapter=str(adapter), num_virtual_tokens=4, batch_size=4, max_steps=4, eval_every=2,
        precision="fp32", device="cpu",
    )  # fmt: skip
    return TransferConfig(**{**settings, **overrides})


def test_trainer_starts_from_the_given_prompt(loaded, source):
    folder, prompt = source
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    start = load_source_prompt(folder, loaded, 4)
    trainer = PromptTrainer(scorer, small(folder), start_prompt=start)
    assert torch.equal(trainer.prompt.detach(), prompt) and torch.equal(trainer.best_prompt, prompt)


def test_transfer_tunes_from_the_adapter_and_leaves_the_backbone_alone(loaded, source, tmp_path):
    folder, prompt = source
    before = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    # a vanishing learning rate: the tuned prompt is still the adapter's, not a fresh initialisation
    config = small(folder, optimizer="adamw", learning_rate=1e-12)
    result = run_transfer(loaded, RTE, EXAMPLES, EXAMPLES, EXAMPLES, config, tmp_path / "run", show_progress=False)
    torch.testing.assert_close(load_prompt(tmp_path / "run" / ADAPTER_DIR), prompt)
    assert all(torch.equal(before[name], value) for name, value in loaded.model.state_dict().items())
    assert result["method"] == "transfer" and result["source_adapter"] == str(folder)
    assert result["trainable_parameters"] == prompt.numel()
    assert all(math.isfinite(value) for value in (*result["dev"].values(), *result["test"].values()))
    assert json.loads((tmp_path / "run" / RESULT_FILE).read_text()) == result


def test_transfer_really_moves_the_prompt_with_a_normal_learning_rate(loaded, source, tmp_path):
    folder, prompt = source
    run_transfer(loaded, RTE, EXAMPLES, EXAMPLES, config=small(folder), out_dir=tmp_path / "run", show_progress=False)
    assert not torch.allclose(load_prompt(tmp_path / "run" / ADAPTER_DIR), prompt)


def test_mismatched_adapters_are_refused_with_the_reason(loaded, source, tmp_path):
    folder, prompt = source
    with pytest.raises(ValueError, match="has 4 virtual tokens but the run asks for 6; set num_virtual_tokens=4"):
        load_source_prompt(folder, loaded, 6)
    save_prompt(torch.zeros(4, 2 * loaded.embedding_dim), loaded.family, loaded.name, tmp_path / "wide")
    with pytest.raises(ValueError, match=r"64 dimensions but .* embeds tokens in 32"):
        load_source_prompt(tmp_path / "wide", loaded, 4)
    save_prompt(prompt, loaded.family, "some/other-model", tmp_path / "other")
    with pytest.raises(ValueError, match="tuned on 'some/other-model'"):
        load_source_prompt(tmp_path / "other", loaded, 4)
    assert torch.equal(load_source_prompt(tmp_path / "other", loaded, 4, require_same_base=False), prompt)
    with pytest.raises(FileNotFoundError, match=r"no adapter_config\.json"):
        load_source_prompt(tmp_path / "missing", loaded, 4)
    with pytest.raises(ValueError, match="set num_virtual_tokens=4"):  # the runner checks before training
        run_transfer(loaded, RTE, EXAMPLES, EXAMPLES, config=small(folder, num_virtual_tokens=6))


def test_transfer_needs_a_source():
    with pytest.raises(ValueError, match="source_adapter"):
        TransferConfig()
    with pytest.raises(ValueError, match="TransferConfig"):
        run_transfer(None, RTE, EXAMPLES, EXAMPLES)


def test_a_base_model_named_by_another_path_is_the_same(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_model_dirs[Family.DECODER].parent)
    loaded = load_model(tiny_model_dirs[Family.DECODER].name)  # a relative path
    save_prompt(torch.zeros(4, loaded.embedding_dim), loaded.family, str(tiny_model_dirs[Family.DECODER]), tmp_path)
    assert load_source_prompt(tmp_path, loaded, 4).shape == (4, loaded.embedding_dim)


def test_a_prefix_transfers_and_lora_is_refused(loaded, tmp_path):
    from dawgen.classifier.adapter import load_tuned
    from dawgen.classifier.config import PromptTuneConfig
    from dawgen.classifier.run import prompt_tune

    tune = PromptTuneConfig(peft="prefix", num_virtual_tokens=4, batch_size=4, max_steps=2, eval_every=2,
                            precision="fp32", device="cpu")  # fmt: skip
    source = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, config=tune, out_dir=tmp_path / "source", show_progress=False)
    folder = tmp_path / "source" / ADAPTER_DIR
    config = small(folder, peft="prefix", optimizer="adamw", learning_rate=1e-12)
    result = run_transfer(loaded, RTE, EXAMPLES, EXAMPLES, config=config, out_dir=tmp_path / "run", show_progress=False)
    assert result["peft"] == "prefix" and source.prompt is not None
    torch.testing.assert_close(load_tuned(tmp_path / "run" / ADAPTER_DIR), source.prompt)
    with pytest.raises(ValueError, match="holds a prefix adapter; this run trains peft 'prompt'"):
        load_source_prompt(folder, loaded, 4)
    with pytest.raises(ValueError, match="set peft to prompt or prefix, not lora"):
        small(folder, peft="lora")
    with pytest.raises(ValueError, match="needs prefix_projection off"):
        small(folder, peft="prefix", prefix_projection=True)
