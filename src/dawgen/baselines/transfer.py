"""Transfer-initialised prompt tuning (SPoT, Vu et al. 2022): start from another run's prompt.

The soft prompt starts as the prompt of a saved PEFT prompt-tuning adapter (another task's
``adapter/``, or a PPT pre-trained one, see ``dawgen.baselines.ppt``) instead of vocabulary
embeddings, then is prompt-tuned as usual on a frozen backbone. The adapter must have been tuned on
the same base model, with the configured number of virtual tokens; anything else stops with an error.
With ``peft: prefix`` the same holds for PEFT prefixes (a saved prefix adapter's key/values start the
run; ``prefix_projection`` must be off); LoRA has no prompt to transfer and stops with an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig

from dawgen.classifier.adapter import load_prompt, load_tuned, peft_kind
from dawgen.classifier.config import PeftKind, PromptTuneConfig
from dawgen.classifier.run import prompt_tune
from dawgen.data.example import Example
from dawgen.models.loading import LoadedModel
from dawgen.tasks.schema import TaskSpec

PEFT_CONFIG_FILE = "adapter_config.json"


@dataclass
class TransferConfig(PromptTuneConfig):
    """Prompt tuning's settings, started from ``source_adapter`` (``prompt_init`` is not used)."""

    source_adapter: str = ""  # the folder of a PEFT prompt-tuning adapter (a run's adapter/)
    require_same_base: bool = True  # refuse an adapter tuned on another base model

    def __post_init__(self) -> None:
        super().__post_init__()
        check_startable(self, "transfer")
        if not self.source_adapter:
            raise ValueError("transfer needs source_adapter: the adapter/ folder of a prompt-tuning run")


def check_startable(config: PromptTuneConfig, method: str) -> None:
    """A method that starts from a trained prompt needs ``peft`` prompt, or prefix without projection."""
    if config.peft is PeftKind.LORA:
        raise ValueError(
            f"{method} starts from a trained soft prompt or prefix; set peft to prompt or prefix, not lora"
        )
    if config.peft is PeftKind.PREFIX and config.prefix_projection:
        raise ValueError(
            f"{method} with peft 'prefix' needs prefix_projection off: a saved prefix holds the projected "
            "key/values, not the projection's weights"
        )


def _same_model(a: str, b: str) -> bool:
    """Whether two model specs name the same model (equal, or the same folder or file)."""
    if a == b:
        return True
    first, second = Path(a).expanduser(), Path(b).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


def load_source_prompt(
    folder: str | Path,
    loaded: LoadedModel,
    num_virtual_tokens: int,
    require_same_base: bool = True,
    peft: PeftKind = PeftKind.PROMPT,
) -> torch.Tensor:
    """The [n, d] prompt of the adapter in ``folder`` (or, for ``peft`` prefix, its [n, layers * 2 *
    kv width] key/values), checked against the model it will start on."""
    folder = Path(folder)
    if not (folder / PEFT_CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {PEFT_CONFIG_FILE}; expected the adapter/ folder of a prompt-tuning run")
    kind = peft_kind(folder)
    if kind is not PeftKind(peft):
        raise ValueError(f"{folder} holds a {kind.value} adapter; this run trains peft {PeftKind(peft).value!r}")
    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if require_same_base and not _same_model(str(base), loaded.name):
        raise ValueError(
            f"{folder} holds a prompt tuned on {base!r}, not on {loaded.name!r}: a soft prompt transfers between "
            "tasks of one model (set require_same_base=False if it is the same model under another name)"
        )
    prompt = load_prompt(folder) if kind is PeftKind.PROMPT else load_tuned(folder)
    assert prompt is not None
    length, dim = prompt.shape
    if kind is PeftKind.PROMPT and dim != loaded.embedding_dim:
        raise ValueError(
            f"{folder}: the prompt's vectors have {dim} dimensions but {loaded.name} embeds tokens in "
            f"{loaded.embedding_dim}; it was tuned on another model"
        )
    if length != num_virtual_tokens:
        raise ValueError(
            f"{folder}: the {kind.value} has {length} virtual tokens but the run asks for {num_virtual_tokens}; "
            f"set num_virtual_tokens={length}"
        )
    return prompt


def run_transfer(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: TransferConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Prompt-tune from ``config.source_adapter``'s prompt; the run folder is prompt tuning's."""
    if config is None:
        raise ValueError("transfer needs a TransferConfig naming source_adapter")
    start = load_source_prompt(
        config.source_adapter, loaded, config.num_virtual_tokens, config.require_same_base, config.peft
    )
    outcome = prompt_tune(
        loaded, task, train, dev, test=test, config=config, out_dir=out_dir, show_progress=show_progress,
        start_prompt=start, method="transfer", details={"source_adapter": str(config.source_adapter)},
    )  # fmt: skip
    return outcome.result
