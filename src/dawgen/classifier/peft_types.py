"""PEFT prefix tuning and LoRA on the frozen classifier: the trainable sets beyond the soft prompt.

The soft prompt (``PeftKind.PROMPT``) is dawgen's own: ``PromptTrainer`` holds it as one tensor and
the scorer writes it into the input embeddings. ``prefix`` (PEFT's ``PrefixTuningConfig``) and ``lora``
(``LoraConfig``) are attached to the scorer's model with ``get_peft_model``, or loaded from a saved
adapter, as a ``PeftAdapter``. While attached, the scorer's forward goes through the PEFT model
(``Scorer.adapter_model``), so the logits are PEFT's own: PEFT builds the prefixes' key/value cache
(with its attention mask in front and, for decoders, positions offset by the prefix length), and LoRA
lives in the wrapped linear layers. ``release`` gives the scorer its plain model back: LoRA layers are
unloaded, so the caller's model ends as it started.

Where the prefixes go (PEFT 0.21 with transformers 5): every self-attention layer of a decoder or a
masked LM; for seq2seq models only the decoder's self-attention (transformers keeps a cache out of the
encoder), so there a one-token answer can read them only through the decoder.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, PrefixTuningConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers.pytorch_utils import Conv1D

from dawgen.classifier.adapter import PEFT_TASK_TYPE, peft_kind
from dawgen.classifier.config import PeftKind, PromptTuneConfig
from dawgen.classifier.scorer import Scorer
from dawgen.utils.io import atomic_dir

ADAPTER_NAME = "default"
PREFIX_WEIGHT = f"prompt_encoder.{ADAPTER_NAME}.embedding.weight"
# LoRA's default targets: the first set whose names are all linear layers of the model (query, value)
LORA_TARGET_CANDIDATES = (
    ("q_proj", "v_proj"),  # Llama, Mistral, Qwen, SmolLM, OPT, BART
    ("q", "v"),  # T5
    ("query", "value"),  # BERT, RoBERTa, ELECTRA
    ("q_lin", "v_lin"),  # DistilBERT
    ("query_proj", "value_proj"),  # DeBERTa-v2
    ("c_attn",),  # GPT-2
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("Wqkv",),  # ModernBERT
)


def default_lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections LoRA adapts by default, found by module name."""
    layers = (torch.nn.Linear, Conv1D)
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, layers)}
    for names in LORA_TARGET_CANDIDATES:
        if set(names) <= linear:
            return list(names)
    raise ValueError(
        f"cannot tell which layers of {type(model).__name__} LoRA should adapt; set lora_targets to some of its "
        f"linear layers: {', '.join(sorted(linear))}"
    )


def build_peft_config(config: PromptTuneConfig, scorer: Scorer) -> PeftConfig:
    """PEFT's config of ``config.peft`` (prefix or LoRA) for the scorer's model."""
    task_type = PEFT_TASK_TYPE[scorer.family]
    if config.peft is PeftKind.PREFIX:
        return PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=config.num_virtual_tokens,
            prefix_projection=config.prefix_projection, encoder_hidden_size=config.prefix_hidden_size,
        )  # fmt: skip
    if config.peft is PeftKind.LORA:
        return LoraConfig(
            task_type=task_type, r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=config.lora_targets or default_lora_targets(scorer.model),
        )  # fmt: skip
    raise ValueError(f"peft {config.peft.value!r} is dawgen's own soft prompt, not a PEFT adapter to attach")


@contextmanager
def _quiet() -> Iterator[None]:
    """PEFT asks transformers for ``is_gradient_checkpointing``, which warns of its deprecation."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _check_free(scorer: Scorer) -> None:
    if scorer.adapter_model is not None:
        raise ValueError("the scorer's model already has a PEFT adapter attached; release it first")


class PeftAdapter:
    """A prefix or LoRA adapter on a scorer's model, the scorer's forward going through it."""

    def __init__(self, scorer: Scorer, model: Any, kind: PeftKind) -> None:
        self.scorer, self.model, self.kind = scorer, model, kind
        scorer.adapter_model = model

    @classmethod
    def create(cls, scorer: Scorer, config: PromptTuneConfig) -> PeftAdapter:
        """A fresh adapter of ``config.peft``, initialised as PEFT does under ``config.seed``."""
        _check_free(scorer)
        peft_config = build_peft_config(config, scorer)
        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(config.seed)
            model = get_peft_model(scorer.model, peft_config, adapter_name=ADAPTER_NAME)
        return cls(scorer, model.to(scorer.device), config.peft)

    @classmethod
    def load(cls, scorer: Scorer, folder: str | Path) -> PeftAdapter:
        """The saved prefix or LoRA adapter in ``folder`` (``PeftModel.from_pretrained``), frozen."""
        _check_free(scorer)
        kind = peft_kind(folder)
        if kind is PeftKind.PROMPT:
            raise ValueError(f"{folder} holds a soft prompt: insert it with the scorer instead")
        with _quiet():
            model = PeftModel.from_pretrained(scorer.model, str(folder), adapter_name=ADAPTER_NAME)
        return cls(scorer, model.to(scorer.device).eval(), kind)

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trainable tensors, in a fixed order."""
        return [(name, param) for name, param in self.model.named_parameters() if param.requires_grad]

    def state(self) -> dict[str, torch.Tensor]:
        """A detached copy of every trainable tensor."""
        return {name: param.detach().clone() for name, param in self.named_parameters()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.copy_(state[name])

    def start_from(self, prefix: torch.Tensor) -> None:
        """Start the prefixes from saved ones ([n, layers * 2 * kv width], as PEFT saves them)."""
        if self.kind is not PeftKind.PREFIX or self.model.peft_config[ADAPTER_NAME].prefix_projection:
            raise ValueError(
                "only a prefix without prefix_projection can start from a saved tensor (PEFT saves the projected "
                f"key/values, not the MLP); this run trains peft {self.kind.value!r}"
            )
        weight = dict(self.named_parameters())[PREFIX_WEIGHT]
        if prefix.shape != weight.shape:
            raise ValueError(f"start prefix has shape {tuple(prefix.shape)}; this run needs {tuple(weight.shape)}")
        with torch.no_grad():
            weight.copy_(prefix)

    def saved_tensor(self) -> torch.Tensor | None:
        """What PEFT saves of a prefix adapter ([n, layers * 2 * kv width], float32); None for LoRA."""
        if self.kind is not PeftKind.PREFIX:
            return None
        return self.model.get_prompt_embedding_to_save(ADAPTER_NAME).detach().float().cpu()

    def set_training(self, mode: bool) -> None:
        """Switch LoRA's dropout on or off (the backbone's own dropout stays off: it is frozen)."""
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.lora_dropout.train(mode)

    def save(self, folder: str | Path, base_model: str) -> None:
        """A standard PEFT adapter in ``folder`` (``PeftModel.from_pretrained(base, folder)`` loads it). The
        base model's embeddings are frozen in every type here, so they are not saved, and PEFT does not look
        ``base_model`` up on the Hub to decide (offline, that lookup warns of a network error)."""
        self.model.peft_config[ADAPTER_NAME].base_model_name_or_path = base_model
        with atomic_dir(folder) as tmp, _quiet():
            self.model.save_pretrained(str(tmp), save_embedding_layers=False)

    def release(self) -> None:
        """Detach the adapter: the scorer's forward is the plain model's again, LoRA layers removed."""
        if self.scorer.adapter_model is self.model:
            self.scorer.adapter_model = None
        if self.kind is PeftKind.LORA:
            self.model.unload()
