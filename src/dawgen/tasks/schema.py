"""The task definition: labels, verbalizer, templates per backbone family, metrics, generator text."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from enum import StrEnum

from dawgen.data.example import ColumnMap, Example


class Family(StrEnum):
    """Backbone families, which differ in where the answer is read."""

    DECODER = "decoder"  # causal LM: the label word is the next token after the template
    MASKED = "masked"  # masked LM: the label word fills the mask
    SEQ2SEQ = "seq2seq"  # encoder-decoder: the label word is the first decoder token


ANSWER = "answer"
TEXT_FIELDS = ("text_a", "text_b")
TEXT_MODIFIERS = ("", "nopunct", "lowerfirst")


class TaskError(ValueError):
    """A task definition that cannot work."""


def _template_fields(template: str) -> list[tuple[str, str]]:
    """The ``(name, modifier)`` of every placeholder in ``template``."""
    return [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name is not None]


@dataclass(frozen=True)
class GeneratorText:
    """What the synthetic-data generator needs per task (used by stages 1 and 2)."""

    descriptions: dict[str, str]
    connector: str = "\n"
    repetition_penalty: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One classification task, as data.

    Templates use ``{text_a}``, ``{text_b}`` and ``{answer}``; a text placeholder may take a
    modifier: ``{text_a:nopunct}`` drops final punctuation, ``{text_b:lowerfirst}`` lower-cases
    the first letter (LM-BFF's ``*sent-_0*`` and ``*+sentl_1*``).
    """

    name: str
    labels: tuple[str, ...]
    label_words: dict[str, str]
    templates: dict[Family, str]
    columns: ColumnMap
    generator: GeneratorText
    pair: bool = True
    f1_positive_label: str | None = None
    kshot_files: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "dev": "dev.tsv"})
    test_file: str | None = None  # the evaluation set inside a data root, relative to <root>/<TASK>/
    description: str = ""

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if len(self.labels) < 2:
            raise TaskError(f"{where}: needs at least two labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"{where}: duplicate labels in {list(self.labels)}")
        if set(self.label_words) != set(self.labels):
            raise TaskError(
                f"{where}: label_words must name every label exactly once; "
                f"labels {sorted(self.labels)}, label_words {sorted(self.label_words)}"
            )
        words = [w.strip().lower() for w in self.label_words.values()]
        if len(set(words)) != len(words) or not all(words):
            raise TaskError(f"{where}: label words must be distinct and non-empty: {self.label_words}")
        if self.f1_positive_label is not None and self.f1_positive_label not in self.labels:
            raise TaskError(f"{where}: f1_positive_label {self.f1_positive_label!r} is not a label")
        if not self.templates:
            raise TaskError(f"{where}: no templates")
        for family, template in self.templates.items():
            self._check_template(family, template)
        for name in ("descriptions", "repetition_penalty"):
            unknown = set(getattr(self.generator, name)) - set(self.labels)
            if unknown:
                raise TaskError(f"{where}: generator.{name} names unknown labels {sorted(unknown)}")

    def _check_template(self, family: Family, template: str) -> None:
        where = f"task {self.name!r}, template '{family.value}'"
        try:
            fields = _template_fields(template)
        except ValueError as exc:
            raise TaskError(f"{where}: {exc}: {template!r}") from exc
        names = [name for name, _ in fields]
        for name, modifier in fields:
            if name not in (*TEXT_FIELDS, ANSWER):
                raise TaskError(f"{where}: unknown placeholder {{{name}}}; use {{text_a}}, {{text_b}}, {{answer}}")
            if name != ANSWER and modifier not in TEXT_MODIFIERS:
                raise TaskError(f"{where}: unknown modifier ':{modifier}' (known: nopunct, lowerfirst)")
        if "text_a" not in names:
            raise TaskError(f"{where}: must contain {{text_a}}")
        if self.pair != ("text_b" in names):
            need = "must contain" if self.pair else "is a single-sentence task and cannot use"
            raise TaskError(f"{where}: {need} {{text_b}}")
        if names.count(ANSWER) > 1:
            raise TaskError(f"{where}: {{answer}} may appear once")
        if family is Family.DECODER and not template.endswith("{answer}"):
            raise TaskError(f"{where}: a decoder-only template must end with {{answer}}")
        if family is Family.MASKED and ANSWER not in names:
            raise TaskError(f"{where}: a masked-LM template needs an {{answer}} slot for the mask")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, label: str) -> int:
        return self.labels.index(label)

    def template(self, family: Family) -> str:
        try:
            return self.templates[family]
        except KeyError:
            raise TaskError(
                f"task {self.name!r} has no template for {family.value} models; add one under templates.{family.value}"
            ) from None

    def check_example(self, example: Example) -> None:
        """Raise ``TaskError`` if ``example`` cannot belong to this task."""
        if example.label not in self.labels:
            raise TaskError(f"task {self.name!r}: unknown label {example.label!r} (labels: {list(self.labels)})")


def apply_modifier(text: str, modifier: str) -> str:
    """Apply a template text modifier (see ``TaskSpec``)."""
    text = text.strip()
    if modifier == "nopunct":
        return text[:-1].rstrip() if text and text[-1] in ".?!,;:" else text
    if modifier == "lowerfirst":
        return text[:1].lower() + text[1:]
    return text


def render(template: str, text_a: str, text_b: str | None, answer: str) -> str:
    """Fill a template. ``answer`` is what stands in the answer slot (mask, word, or nothing)."""
    parts = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        if name == ANSWER:
            parts.append(answer)
        else:
            value = text_a if name == "text_a" else text_b
            parts.append(apply_modifier(value or "", spec or ""))
    return "".join(parts)
