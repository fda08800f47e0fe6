"""The baselines of the paper's Table 1 that need training, selectable by name.

``BASELINES[name](loaded, task, train, dev, test, config, out_dir, show_progress)`` runs one and returns
its result (the shape of a prompt-tuning result: ``method``, ``task``, ``model``, ``dev``, ``test``,
``trainable_parameters``, ``train_seconds``, ``config``, ...); ``BASELINES[name].config`` is its
settings class (``dawgen.config.config_from_dict(BASELINES[name].config, options)``). Zero-shot and
in-context prompting, which train nothing, are ``dawgen.classifier.evaluate.evaluate``; prompt tuning
is ``dawgen.classifier.run.prompt_tune``. A baseline that ``uses_synthetic`` (``setfit+syn``) also takes
``synthetic=PATH``, the synthetic set it adds to the real data; in a run it is the method
``<name>+[<variant>+]syn`` and takes the options of ``options_from`` (``setfit``) under its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dawgen.baselines.ft import FTConfig, run_ft
from dawgen.baselines.optima import OptimaConfig, run_optima
from dawgen.baselines.pft import PFTConfig, run_pft, run_pft_prompt
from dawgen.baselines.ppt import PPTConfig, pretrain_prompt, run_ppt
from dawgen.baselines.setfit import SetFitConfig, run_setfit
from dawgen.baselines.setfit_syn import SetFitSynConfig, run_setfit_syn
from dawgen.baselines.transfer import TransferConfig, load_source_prompt, run_transfer


@dataclass(frozen=True)
class Baseline:
    """One baseline: its runner (call the record itself) and its settings class."""

    run: Callable[..., dict[str, Any]]
    config: type
    description: str
    uses_classifier: bool = True  # False: brings its own model (``loaded`` may be None)
    uses_synthetic: bool = False  # True: also trains on a synthetic set (``synthetic=PATH``)
    options_from: str | None = None  # in a run config, this baseline's options apply first

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.run(*args, **kwargs)


BASELINES: dict[str, Baseline] = {
    "ft": Baseline(run_ft, FTConfig, "full fine-tuning with a classification head, no prompt"),
    "pft": Baseline(run_pft, PFTConfig, "prompt-based fine-tuning (LM-BFF): template + verbalizer, all weights"),
    "pft+prompt": Baseline(run_pft_prompt, PFTConfig, "prompt-based fine-tuning with a soft prompt"),
    "transfer": Baseline(run_transfer, TransferConfig, "prompt tuning from another task's prompt (SPoT)"),
    "ppt": Baseline(run_ppt, PPTConfig, "prompt pre-trained on self-supervised pairs (PPT), then tuned"),
    "optima": Baseline(
        run_optima, OptimaConfig, "prompt pre-trained on a source task with OPTIMA's domain adaptation, then tuned"
    ),
    "setfit": Baseline(run_setfit, SetFitConfig, "SetFit on all-MiniLM-L6-v2 (optional extra)", False),
    "setfit+syn": Baseline(
        run_setfit_syn, SetFitSynConfig, "SetFit on the real pairs plus a synthetic set", False, True, "setfit"
    ),
}

__all__ = [
    "BASELINES",
    "Baseline",
    "FTConfig",
    "OptimaConfig",
    "PFTConfig",
    "PPTConfig",
    "SetFitConfig",
    "SetFitSynConfig",
    "TransferConfig",
    "load_source_prompt",
    "pretrain_prompt",
    "run_ft",
    "run_optima",
    "run_pft",
    "run_pft_prompt",
    "run_ppt",
    "run_setfit",
    "run_setfit_syn",
    "run_transfer",
]
