"""Turning examples into token ids for verbalizer scoring: template, answer slot, truncation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from dawgen.data.example import Example
from dawgen.tasks.schema import ANSWER, Family, TaskError, TaskSpec, render

DEMONSTRATION_SEPARATOR = "\n\n"
UNLABELLED = -1  # the ``label`` of an example encoded without one (``encode_unlabelled``)


@dataclass(frozen=True)
class Encoded:
    """One example ready for the model. ``answer_index`` is where the label word is read
    (within ``input_ids``; the decoder position for seq2seq is always 0); ``demonstrations`` is
    how many in-context demonstrations stand in front of it."""

    input_ids: list[int]
    answer_index: int
    label: int
    demonstrations: int = 0


class TaskEncoder:
    """Renders a task's template for one backbone family and finds its label-word token ids."""

    def __init__(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, family: Family, max_length: int = 256):
        self.task = task
        self.tokenizer = tokenizer
        self.family = family
        self.max_length = max_length
        self.template = task.template(family)
        self.answer_slot = self._answer_slot_text()
        self.label_token_ids = self._label_token_ids()
        self._demonstration_lengths: dict[Example, int] = {}

    def _answer_slot_text(self) -> str:
        if self.family is Family.MASKED:
            if self.tokenizer.mask_token is None:
                raise TaskError(f"masked-LM tokenizer {type(self.tokenizer).__name__} has no mask token")
            return self.tokenizer.mask_token
        if self.family is Family.SEQ2SEQ:  # T5-style sentinel where the template asks for one
            extra = getattr(self.tokenizer, "additional_special_tokens", None) or []
            return extra[0] if extra else ""
        return ""  # decoder: the answer is the next token after the template

    def _label_token_ids(self) -> list[int]:
        """First token of " " + word for every label, in label order; they must differ."""
        ids = []
        for label in self.task.labels:
            word = self.task.label_words[label]
            tokens = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            if not tokens:
                raise TaskError(f"task {self.task.name!r}: label word {word!r} encodes to no token")
            ids.append(tokens[0])
        if len(set(ids)) != len(ids):
            words = [self.task.label_words[label] for label in self.task.labels]
            pieces = {w: self.tokenizer.convert_ids_to_tokens(i) for w, i in zip(words, ids, strict=True)}
            raise TaskError(
                f"task {self.task.name!r}: label words share their first token in this tokenizer {pieces}; "
                "choose label words that start differently"
            )
        return ids

    def answer_text(self, label: str) -> str:
        """What fills the answer slot in a demonstration: the label word."""
        word = self.task.label_words[label]
        return " " + word if self.family is Family.DECODER else word

    def render_demonstration(self, example: Example) -> str:
        if ANSWER in self.template:
            return render(self.template, example.text_a, example.text_b, self.answer_text(example.label))
        return render(self.template, example.text_a, example.text_b, "") + " " + self.task.label_words[example.label]

    def _token_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        eos = self.tokenizer.eos_token_id
        if self.family is Family.DECODER and eos is not None and len(ids) > 1 and ids[-1] == eos:
            ids = ids[:-1]  # the label word must follow the template directly
        return ids

    def _truncate(self, text: str, n_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer.decode(ids[: max(1, len(ids) - n_tokens)])

    def encode(self, example: Example, demonstrations: Sequence[Example] = (), *, labelled: bool = True) -> Encoded:
        """Encode ``example`` (with optional in-context demonstrations in front) in at most
        ``max_length`` tokens. The example itself always fits whole when it can (its longer text is
        cut only when it alone is too long); demonstrations that do not fit are dropped, the ones
        farthest from the example first (LM-BFF's head truncation). ``labelled`` False leaves the
        example's label unread (``UNLABELLED``)."""
        text_a, text_b = example.text_a, example.text_b
        for _ in range(4):
            query = render(self.template, text_a, text_b, self.answer_slot)
            ids = self._token_ids(query)
            overflow = len(ids) - self.max_length
            if overflow <= 0:
                break
            if text_b is not None and len(text_b) > len(text_a):
                text_b = self._truncate(text_b, overflow)
            else:
                text_a = self._truncate(text_a, overflow)
        else:
            raise TaskError(f"cannot fit an example into max_length={self.max_length} tokens; raise max_length")
        kept = self._fitting(demonstrations, self.max_length - len(ids))
        while kept:
            prefix = "".join(self.render_demonstration(d) + DEMONSTRATION_SEPARATOR for d in kept)
            with_demonstrations = self._token_ids(prefix + query)
            if len(with_demonstrations) <= self.max_length:
                ids = with_demonstrations
                break
            kept = kept[1:]  # token boundaries merged differently: drop one more
        label = self.task.label_index(example.label) if labelled else UNLABELLED
        return Encoded(ids, self._answer_index(ids), label, len(kept))

    def _fitting(self, demonstrations: Sequence[Example], room: int) -> list[Example]:
        """The longest tail of ``demonstrations`` whose tokens fit in ``room``."""
        used, start = 0, len(demonstrations)
        while start > 0:
            cost = self._demonstration_length(demonstrations[start - 1])
            if used + cost > room:
                break
            used, start = used + cost, start - 1
        return list(demonstrations[start:])

    def _demonstration_length(self, example: Example) -> int:
        if example not in self._demonstration_lengths:
            text = self.render_demonstration(example) + DEMONSTRATION_SEPARATOR
            self._demonstration_lengths[example] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._demonstration_lengths[example]

    def _answer_index(self, ids: list[int]) -> int:
        if self.family is Family.MASKED:
            return ids.index(self.tokenizer.mask_token_id)
        if self.family is Family.SEQ2SEQ:
            return 0
        return len(ids) - 1

    def encode_all(self, examples: Sequence[Example]) -> list[Encoded]:
        return [self.encode(example) for example in examples]

    def encode_unlabelled(self, examples: Sequence[Example]) -> list[Encoded]:
        """The inputs of ``examples`` alone: their labels are not read (every ``label`` is ``UNLABELLED``)."""
        return [self.encode(example, labelled=False) for example in examples]
