"""The prompt-tuning step's shortcuts give what the plain computation gives: the label rows of the LM head,
sub-batches of similar length, fp32 attention under CPU bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from tests_support import RTE_PAIRS

from dawgen.classifier import train as train_module
from dawgen.classifier.batching import split_by_length
from dawgen.classifier.config import PeftKind, PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.data.example import Example
from dawgen.models.attention import FP32_CPU_SDPA, use_fp32_cpu_attention
from dawgen.models.loading import load_model
from dawgen.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTE = get_task("RTE")
LONG = Example(" ".join([RTE_PAIRS[0].text_a] * 6), "entailment", RTE_PAIRS[0].text_b)
EXAMPLES = [*RTE_PAIRS[:3], LONG]
KINDS = [PeftKind.PROMPT, PeftKind.PREFIX, PeftKind.LORA]


def small_config(**overrides) -> PromptTuneConfig:
    settings = dict(num_virtual_tokens=4, batch_size=4, max_steps=2, eval_every=2, precision="fp32", device="cpu")
    return PromptTuneConfig(**{**settings, **overrides})


def scorer_of(folder, precision: str = "fp32") -> VerbalizerScorer:
    return VerbalizerScorer(load_model(str(folder)), RTE, max_length=256, precision=precision, device="cpu")


def test_split_by_length_cuts_off_long_rows_only_when_it_pays():
    assert split_by_length([30, 10, 20], overhead=64) == [[0, 1, 2]]  # not worth a pass: whole, in order
    assert split_by_length([30, 200, 10, 20, 25], overhead=64) == [[2, 3, 4, 0], [1]]
    assert split_by_length([5, 100, 6, 200], overhead=0) == [[0], [2], [1], [3]]
    assert split_by_length([7], overhead=64) == [[0]]
    parts = split_by_length(list(range(40, 0, -3)), overhead=8)
    assert sorted(i for part in parts for i in part) == list(range(14))


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_sub_batches_give_the_batch_gradient(kind, tiny_decoder_dir, monkeypatch):
    scorer = scorer_of(tiny_decoder_dir)
    items = scorer.encoder.encode_all(EXAMPLES)
    with PromptTrainer(scorer, small_config(peft=kind)) as trainer:
        whole = trainer.loss(items)
        expected = torch.autograd.grad(whole, trainer.tuned)
        monkeypatch.setattr(train_module, "SPLIT_OVERHEAD_TOKENS", 0)
        assert len(trainer._parts(items)) > 1
        grad, loss = trainer.gradient(items)
        grads = [grad] if isinstance(grad, torch.Tensor) else grad
        assert loss == pytest.approx(whole.item(), rel=1e-5)
        for ours, theirs in zip(grads, expected, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-4)
        trainer.split_batches = False
        assert trainer._parts(items) == [items]


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_label_head_gives_the_model_logits(kind, tiny_decoder_dir):
    scorer = scorer_of(tiny_decoder_dir)
    assert scorer.label_head
    items = scorer.encoder.encode_all(EXAMPLES)
    with PromptTrainer(scorer, small_config(peft=kind)) as trainer:
        batch = scorer.collate(items, trainer.num_virtual_tokens)
        fast = scorer.label_logits(batch, trainer.prompt)
        scorer.label_head = False
        full = scorer.label_logits(batch, trainer.prompt)
        scorer.label_head = True
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


def test_label_head_is_not_used_where_the_model_changes_its_logits(tiny_decoder_dir):
    loaded = load_model(str(tiny_decoder_dir))
    loaded.model.get_output_embeddings().register_forward_hook(lambda module, args, out: out * 2.0)
    scorer = VerbalizerScorer(loaded, RTE, max_length=256, precision="fp32", device="cpu")
    assert not scorer.label_head
    item = scorer.encoder.encode(EXAMPLES[0])
    ids = torch.tensor([item.input_ids])
    torch.testing.assert_close(
        scorer.label_logits(scorer.collate([item])), loaded.model(input_ids=ids).logits[:, -1, scorer.label_ids]
    )


def test_fp32_attention_under_bf16_autocast_matches_the_bf16_kernel(tiny_decoder_dir):
    model = load_model(str(tiny_decoder_dir)).model.eval()
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0

    def forward_and_gradient() -> tuple[torch.Tensor, torch.Tensor]:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits.float()
        (grad,) = torch.autograd.grad(logits[:, -1].sum(), embeds)
        return logits, grad

    plain = forward_and_gradient()
    assert use_fp32_cpu_attention(model) and model.config._attn_implementation == FP32_CPU_SDPA
    assert use_fp32_cpu_attention(model)  # already switched
    fp32 = forward_and_gradient()
    for ours, theirs in zip(fp32, plain, strict=True):
        torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=2e-2)
    scorer = VerbalizerScorer(load_model(str(tiny_decoder_dir)), RTE, precision="bf16", device="cpu")
    assert scorer.model.config._attn_implementation == FP32_CPU_SDPA
