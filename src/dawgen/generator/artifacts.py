"""The tuned generator as a folder: label prompts and weight net in safetensors, settings in JSON.

``generator.json`` names the base model (load it with ``dawgen.models.load_model``), the task and
its labels, the variant, every hyperparameter and the prompts' layout (``prompts.PromptLayout``); the
prompts are one float32 tensor [L, *layout.row_shape()]: [L, m, d] input prompts, or [L, F] flat deep
ones (key/value prefixes, then connector embeddings). A folder without a layout holds input prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dawgen.config import config_from_dict, to_dict
from dawgen.constants import GENERATOR_DIR, GENERATOR_SETTINGS_FILE
from dawgen.generator.config import GeneratorConfig
from dawgen.generator.prompts import PromptLayout
from dawgen.generator.weight_net import WeightNet
from dawgen.utils.io import atomic_dir, atomic_write_json, read_json_object

SETTINGS_FILE = GENERATOR_SETTINGS_FILE
PROMPTS_FILE = "label_prompts.safetensors"
WEIGHT_NET_FILE = "weight_net.safetensors"
PROMPTS_KEY = "label_prompts"
FORMAT = 1


@dataclass
class TunedGenerator:
    """Label prompts (row ``l`` belongs to ``labels[l]``), the weight net (None for ``plain``), and how
    they were made."""

    prompts: torch.Tensor
    weight_net: WeightNet | None
    config: GeneratorConfig
    base_model: str
    task: str
    labels: tuple[str, ...]
    connector: str
    pair: bool
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the kept epoch and its dev metrics
    layout: PromptLayout | None = None  # None: input prompts, [L, m, d]

    def __post_init__(self) -> None:
        if self.layout is None:
            if self.prompts.dim() != 3:
                raise ValueError(f"input label prompts are [labels, tokens, dim], got {list(self.prompts.shape)}")
            self.layout = PromptLayout.input(int(self.prompts.shape[1]), int(self.prompts.shape[2]))

    @property
    def prompt_layout(self) -> PromptLayout:
        assert self.layout is not None
        return self.layout

    def prompt_for(self, label: str) -> torch.Tensor:
        """The prompt of ``label`` (one row of ``prompts``)."""
        return self.prompts[self.labels.index(label)]


def save_generator(generator: TunedGenerator, folder: str | Path) -> Path:
    """Write ``generator`` into ``folder`` (replaced atomically if it exists)."""
    net = generator.weight_net
    settings = {
        "format": FORMAT,
        "base_model": generator.base_model,
        "task": generator.task,
        "labels": list(generator.labels),
        "connector": generator.connector,
        "pair": generator.pair,
        "variant": generator.config.variant.value,
        "prompt_shape": list(generator.prompts.shape),
        "layout": generator.prompt_layout.to_dict(),
        "weight_net": None if net is None else {"in_features": net.in_features, "hidden": net.hidden},
        "config": to_dict(generator.config),
        "info": generator.info,
    }
    with atomic_dir(folder) as tmp:
        save_file({PROMPTS_KEY: generator.prompts.detach().float().cpu().contiguous()}, tmp / PROMPTS_FILE)
        if net is not None:
            state = {key: value.detach().cpu().contiguous() for key, value in net.state_dict().items()}
            save_file(state, tmp / WEIGHT_NET_FILE)
        atomic_write_json(tmp / SETTINGS_FILE, settings)
    return Path(folder)


class GeneratorFolderError(ValueError):
    """A folder that does not hold a usable tuned generator (missing, incomplete or corrupt)."""


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file is missing (the generator folder is incomplete)")
    try:
        return load_file(path)
    except (OSError, ValueError, SafetensorError) as exc:
        raise GeneratorFolderError(f"{path}: not a readable safetensors file ({exc})") from None


_SETTINGS_KEYS = ("base_model", "task", "labels", "connector", "pair", "prompt_shape", "weight_net", "config", "info")


def load_generator(folder: str | Path) -> TunedGenerator:
    """Read a folder written by ``save_generator``. A missing folder or file raises ``FileNotFoundError``,
    a corrupt one ``GeneratorFolderError``; both name the folder or file."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: generator folder not found")
    if not folder.is_dir():
        raise GeneratorFolderError(f"{folder}: not a folder (a tuned generator is a folder holding {SETTINGS_FILE})")
    settings_path = folder / SETTINGS_FILE
    if not settings_path.is_file():
        inner = folder / GENERATOR_DIR
        hint = f"; did you mean {inner}?" if (inner / SETTINGS_FILE).is_file() else ""
        raise FileNotFoundError(f"{folder} holds no tuned generator ({SETTINGS_FILE} is missing){hint}")
    settings = read_json_object(settings_path, GeneratorFolderError)
    if settings.get("format") != FORMAT:
        raise GeneratorFolderError(f"{settings_path}: generator format {settings.get('format')!r} is not {FORMAT}")
    missing = [key for key in _SETTINGS_KEYS if key not in settings]
    if missing:
        raise GeneratorFolderError(f"{settings_path}: missing key(s) {missing}")
    prompts = _read_weights(folder / PROMPTS_FILE).get(PROMPTS_KEY)
    if prompts is None:
        raise GeneratorFolderError(f"{folder / PROMPTS_FILE}: holds no tensor {PROMPTS_KEY!r}")
    if list(prompts.shape) != settings["prompt_shape"] or len(prompts) != len(settings["labels"]):
        raise GeneratorFolderError(
            f"{folder}: label prompts of shape {list(prompts.shape)} do not match {SETTINGS_FILE}"
        )
    layout = None
    if settings.get("layout") is not None:
        try:
            layout = PromptLayout.from_dict(settings["layout"])
            layout.split(prompts)
        except (KeyError, TypeError, ValueError) as exc:
            raise GeneratorFolderError(f"{settings_path}: bad prompt layout {settings['layout']!r} ({exc})") from None
    net = None
    if settings["weight_net"] is not None:
        net = WeightNet(settings["weight_net"]["in_features"], settings["weight_net"]["hidden"])
        try:
            net.load_state_dict(_read_weights(folder / WEIGHT_NET_FILE))
        except RuntimeError as exc:  # missing or misshapen tensors
            first = str(exc).strip().splitlines()[0]
            raise GeneratorFolderError(f"{folder / WEIGHT_NET_FILE}: does not match {SETTINGS_FILE}: {first}") from None
    return TunedGenerator(
        prompts=prompts,
        weight_net=net,
        config=config_from_dict(GeneratorConfig, settings["config"], str(settings_path)),
        base_model=settings["base_model"],
        task=settings["task"],
        labels=tuple(settings["labels"]),
        connector=settings["connector"],
        pair=settings["pair"],
        info=settings["info"],
        layout=layout,
    )
