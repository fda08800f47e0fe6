"""Where a generated sample ends: why a row stopped, and the sentence ends read once from the vocabulary.

A row ends a sentence when a token whose text ends with ``.``, ``!`` or ``?`` (closing quotes or
brackets after it allowed: ``."``, ``?)``) is followed by a token that starts a new sentence: one whose
text, after a word, begins with whitespace and then no lower-case letter (``" The"``, ``" 5"``, ``"\\n"``).
The look at the next token keeps decimals inside the sentence (SmolLM2 spells "3.5" as ``3`` ``.`` ``5``),
and abbreviations followed by a lower-case word ("the U.S. today"); the next token is not kept. The
end of the token budget right after such a token also ends the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch

TERMINAL = (".", "!", "?")
CLOSERS = "\"')]}»”’"
MIN_SENTENCE_TOKENS = 3  # a sentence end counts from the third generated token on (two and the punctuation)


class StopReason(StrEnum):
    """How a generated row ended."""

    EOS = "eos"  # it emitted eos
    SENTENCE = "sentence"  # it ended a sentence (``SentenceEnds``)
    LENGTH = "length"  # it ran to max_new_tokens without either: the text did not end


def continuation_texts(tokenizer: Any, size: int) -> list[str]:
    """The text every token id below ``size`` adds after a word, leading whitespace included (decoding a
    token alone drops a SentencePiece token's space); ids past the tokenizer's vocabulary give ""."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
    prefix = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    known = min(size, len(tokenizer))
    texts = tokenizer.batch_decode([[*anchor, i] for i in range(known)], clean_up_tokenization_spaces=False)
    return [text[len(prefix) :] if text.startswith(prefix) else text for text in texts] + [""] * (size - known)


def ends_sentence(text: str) -> bool:
    """Whether a token's text ends with sentence-terminal punctuation, closing quotes or brackets after it allowed."""
    return text.rstrip(CLOSERS).endswith(TERMINAL)


def starts_sentence(text: str) -> bool:
    """Whether a token's text can begin the next sentence: leading whitespace, then no lower-case letter."""
    rest = text.lstrip()
    return text[:1].isspace() and not rest[:1].islower()


@dataclass(frozen=True, eq=False)
class SentenceEnds:
    """Per token id of the model's vocabulary: whether it ends a sentence, and whether it starts one after
    a sentence end. A sentence end counts once the row has at least ``min_tokens`` tokens."""

    ends: torch.Tensor  # [V] bool
    starts: torch.Tensor  # [V] bool
    min_tokens: int = MIN_SENTENCE_TOKENS

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, vocab_size: int, min_tokens: int = MIN_SENTENCE_TOKENS) -> SentenceEnds:
        """Read from every token's text once (special tokens do neither); ``vocab_size``: the logits' width."""
        size = max(vocab_size, len(tokenizer))
        texts = continuation_texts(tokenizer, size)
        special = set(tokenizer.all_special_ids)
        ends = [i not in special and ends_sentence(text) for i, text in enumerate(texts)]
        starts = [i not in special and starts_sentence(text) for i, text in enumerate(texts)]
        return cls(torch.tensor(ends, dtype=torch.bool), torch.tensor(starts, dtype=torch.bool), min_tokens)
