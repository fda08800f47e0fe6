"""The methods a run can compare, by name: what each needs from stages 1 and 2 and how stage 3 trains.

Grammar (one name per method of a results table):

- ``zero-shot``, ``in-context``: the frozen classifier, no training;
- ``pt``: prompt tuning on the real few-shot data only;
- ``<generator>+<combine>[+surgery]``: prompt tuning on real + synthetic data, the synthetic set made by
  the ``plain``, ``fewgen`` or ``dawgen`` generator and combined as ``syn``, ``merged``, ``merged_ls``,
  ``real_then_syn``, ``syn_then_real`` or ``paired`` (``+surgery``: gradient surgery, paired only);
- ``oracle+<combine>[+surgery]``: the same, with the "synthetic" set drawn from the task's pool with its
  **gold labels** (``dawgen.data.oracle``): the ceiling a perfect generator would reach in that budget;
- ``ours``: ``dawgen+paired+surgery``, the paper's method;
- the baselines of ``dawgen.baselines`` by their names (``ft``, ``pft``, ...);
- ``setfit+[<generator>+]syn``: the SetFit baseline on the real data plus the synthetic set of that generator
  (``setfit+syn`` = ``setfit+dawgen+syn``), or of an external ``synthetic_file``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dawgen.classifier.combine import Combine
from dawgen.classifier.evaluate import EvalMethod
from dawgen.config import ConfigError
from dawgen.data.oracle import ORACLE
from dawgen.generator.config import Variant

OURS = "ours"
OURS_RECIPE = "dawgen+paired+surgery"
SURGERY = "surgery"
SYN = "syn"  # the last part of a baseline trained with a synthetic set: setfit+[<generator>+]syn
DEFAULT_SYN_VARIANT = Variant.DAWGEN  # setfit+syn = setfit+dawgen+syn


class MethodKind(StrEnum):
    UNTRAINED = "untrained"  # zero-shot or in-context evaluation
    PROMPT_TUNING = "prompt_tuning"  # real data only, or real + synthetic (``variant`` set)
    BASELINE = "baseline"  # a method of dawgen.baselines


@dataclass(frozen=True)
class Method:
    """A parsed method name."""

    name: str
    kind: MethodKind
    variant: Variant | None = None  # the generator whose synthetic set the method trains on
    combine: Combine = Combine.REAL
    surgery: bool = False
    oracle: bool = False  # trains on gold-labelled pool rows in place of a generator's samples
    baseline: str | None = None  # the key of ``dawgen.baselines.BASELINES`` a BASELINE method runs

    @property
    def needs_synthetic(self) -> bool:
        return self.variant is not None or self.oracle

    @property
    def source(self) -> str | None:
        """Where the method's synthetic set comes from: a generator variant, ``oracle``, or None (real data only)."""
        return ORACLE if self.oracle else self.variant.value if self.variant is not None else None


def baseline_names() -> tuple[str, ...]:
    """The baselines dawgen provides (empty when that package is absent)."""
    try:
        from dawgen.baselines import BASELINES
    except ImportError:
        return ()
    return tuple(BASELINES)


def synthetic_baseline_names() -> tuple[str, ...]:
    """The baselines that also train on a synthetic set (``setfit+syn``; empty when that package is absent)."""
    try:
        from dawgen.baselines import BASELINES
    except ImportError:
        return ()
    return tuple(name for name, baseline in BASELINES.items() if baseline.uses_synthetic)


def _synthetic_baseline(name: str) -> Method | None:
    """``<baseline>+[<generator>+]syn`` as a ``Method`` (None when ``name`` is not of that form)."""
    parts = name.split("+")
    if len(parts) not in (2, 3) or parts[-1] != SYN or f"{parts[0]}+{SYN}" not in synthetic_baseline_names():
        return None
    variants = [v.value for v in Variant]
    if len(parts) == 3 and parts[1] not in variants:
        choices = f"{parts[0]}+<{'|'.join(variants)}>+{SYN}"
        raise ConfigError(f"method {name!r}: {parts[1]!r} is not a generator; use {choices}")
    variant = Variant(parts[1]) if len(parts) == 3 else DEFAULT_SYN_VARIANT
    return Method(name, MethodKind.BASELINE, variant, baseline=f"{parts[0]}+{SYN}")


def parse_method(name: str) -> Method:
    """``name`` as a ``Method``; a name outside the grammar raises ``ConfigError`` listing the choices."""
    if name in {m.value for m in EvalMethod} - {EvalMethod.PROMPT.value}:
        return Method(name, MethodKind.UNTRAINED)
    if name == "pt":
        return Method(name, MethodKind.PROMPT_TUNING)
    synthetic_baseline = _synthetic_baseline(name)
    if synthetic_baseline is not None:
        return synthetic_baseline
    if name in baseline_names():
        return Method(name, MethodKind.BASELINE, baseline=name)
    parts = (OURS_RECIPE if name == OURS else name).split("+")
    variants, combines = [v.value for v in Variant], [c.value for c in Combine if c is not Combine.REAL]
    sources = [*variants, ORACLE]
    if 2 <= len(parts) <= 3 and parts[0] in sources and parts[1] in combines and parts[2:] in ([], [SURGERY]):
        surgery = parts[2:] == [SURGERY]
        if surgery and parts[1] != Combine.PAIRED.value:
            raise ConfigError(f"method {name!r}: gradient surgery needs paired batches (<generator>+paired+surgery)")
        oracle = parts[0] == ORACLE
        variant = None if oracle else Variant(parts[0])
        return Method(name, MethodKind.PROMPT_TUNING, variant, Combine(parts[1]), surgery, oracle)
    raise ConfigError(
        f"unknown method {name!r}; choose zero-shot, in-context, pt, {OURS}, "
        f"<{'|'.join(sources)}>+<{'|'.join(combines)}>[+surgery]"
        + (f", or a baseline: {', '.join(baseline_names())}" if baseline_names() else "")
        + "".join(f", {name.removesuffix(SYN)}<{'|'.join(variants)}>+{SYN}" for name in synthetic_baseline_names())
    )
