"""Settings of label-conditioned generation (Stage 2), with the defaults of method.md."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dawgen.models.inference import Quantize
from dawgen.models.precision import PRECISIONS

ATTEMPTS_PER_SAMPLE = 10  # the default bound on a label's attempts, as a multiple of ``per_label``


class Decoding(StrEnum):
    SAMPLE = "sample"  # nucleus sampling with temperature (method.md's default)
    GREEDY = "greedy"  # argmax at every step (the paper's formula; FewGen's setting for pair tasks)


class DedupKey(StrEnum):
    """What makes two samples duplicates (the later one, by sample index, is dropped)."""

    TEXT = "text"  # the same generated text for the same label (covers the same (text_a, text_b, label) too)
    PAIR = "pair"  # the same (text_a, text_b, label)
    NONE = "none"


class ConsistencyFilter(StrEnum):
    """Who checks that a generated sample carries its label, besides the generator's own prompts."""

    OFF = "off"
    JUDGE = "judge"  # MiniLM pair features + logistic regression fitted on the k-shot training split alone
    CLASSIFIER = "classifier"  # a saved stage-3 classifier (consistency_classifier)


class RelatednessFloor(StrEnum):
    """Whether a pair's two sentences must be about as related as the k-shot pairs of its label."""

    OFF = "off"
    KSHOT = "kshot"  # the relatedness_quantile of the MiniLM cosine over the label's k-shot training pairs


class StopAt(StrEnum):
    """Where a generated sample ends (``stopping``); a row that ends neither way within the budget is ``no_eos``."""

    AUTO = "auto"  # sentence for sentence-pair tasks (their second text is one sentence), eos for the others
    EOS = "eos"  # at the eos token only (FewGen's)
    SENTENCE = "sentence"  # at eos or at the end of the first sentence, its punctuation kept


class Reject(StrEnum):
    """Why a generated sample was dropped; every reason is counted in the summary."""

    NO_EOS = "no_eos"  # no eos (nor a sentence end, where stop_at allows one) within max_new_tokens
    EMPTY = "empty"
    NEWLINE = "newline"
    COPY = "copy"  # a copy of the first sentence: word sets that overlap by copy_threshold or more
    NEAR_COPY = "near_copy"  # a spelling or one-word variant: character similarity of char_copy_threshold or more
    INCONSISTENT = "label_inconsistent"  # another label's prompt explains the sample as well or better
    UNRELATED = "unrelated"  # its sentences less related than the label's k-shot pairs usually are
    JUDGE_REJECTED = "judge_rejected"  # the k-shot judge (or classifier) gives its label under judge_confidence
    DUPLICATE = "duplicate"


@dataclass
class GenerationConfig:
    """Generation of ``per_label`` kept samples for every label from a tuned generator.

    ``repetition_penalty`` None takes each label's penalty from the task table (1.0 where it names
    none); a number applies to every label. Filtered samples are replaced in further rounds with new
    first sentences until every label has ``per_label`` kept samples, or a label gives up: after
    ``max_attempts_per_label`` samples generated for it (None: ``ATTEMPTS_PER_SAMPLE * per_label``),
    when the pool is used up (pair tasks use each pool sentence at most once per label unless
    ``reuse_pool``), or after ``top_up_rounds`` further rounds (None: no limit on rounds). A label
    that gave up is named in a warning and in the summary's ``gave_up``. ``copy_threshold``:
    Jaccard overlap of the lower-cased word sets of the two sentences at or above which the second
    counts as a copy of the first. ``precision`` bf16 (or ``auto`` on a machine with fast bf16) casts
    the generator's weights to bf16 (decoding runs no backward; ``models.inference``); ``quantize`` int8
    replaces its linear layers by dynamic int8 ones (CPU, fp32 activations). ``stop_at``: where a sample
    ends (``StopAt``); a sentence end is terminal punctuation followed by a token that starts a new
    sentence (``stopping``), so "3.5" does not end one.

    Filters against wrong labels and shortcuts (``synthesis.kshot_filters``; the last group of fields):
    ``char_copy_threshold``, the character-level similarity (``filters.char_similarity``) at or above
    which the second sentence is a near-copy of the first (0.9: a spelling variant or one changed short
    word in a sentence of 60 characters is caught, a real paraphrase scores 0.3-0.55; 1.0 catches nothing
    the word-set check misses). ``consistency_filter`` ``judge`` keeps a sample only if a judge fitted on
    the k-shot training split alone gives it its own label with probability ``judge_confidence`` or more
    (0.5: for two labels the judge's argmax, for three a majority); ``classifier`` asks the stage-3
    classifier saved in ``consistency_classifier`` instead (``{task}``, ``{seed}``, ``{k}`` are filled in
    a run config). ``relatedness_floor`` ``kshot`` drops pairs whose MiniLM cosine is below the
    ``relatedness_quantile`` of that label's k-shot training pairs. The pool's gold labels are never read.
    """

    per_label: int = 5000
    decoding: Decoding = Decoding.SAMPLE
    top_p: float = 0.9
    temperature: float = 0.8
    max_new_tokens: int = 50
    repetition_penalty: float | None = None
    batch_size: int = 32
    copy_threshold: float = 0.9
    dedup: DedupKey = DedupKey.TEXT
    label_consistency: bool = False
    consistency_margin: float = 0.0  # in mean log-prob per token
    max_attempts_per_label: int | None = None
    top_up_rounds: int | None = None
    reuse_pool: bool = False
    reuse_prompt_cache: bool = True  # compute each label prompt's keys/values once (False: every batch)
    first_sentence_tokens: int | None = None  # None: the generator's own setting
    precision: str = "auto"
    quantize: Quantize = Quantize.NONE
    device: str = "auto"
    seed: int = 13
    stop_at: StopAt = StopAt.AUTO

    # -- filters against wrong labels and shortcuts (issue 16; see synthesis.kshot_filters) --
    char_copy_threshold: float = 0.9
    consistency_filter: ConsistencyFilter = ConsistencyFilter.OFF
    judge_confidence: float = 0.5  # P(own label) at or above which the judge keeps a sample
    consistency_classifier: str | None = None  # a stage-3 classifier folder (consistency_filter classifier)
    relatedness_floor: RelatednessFloor = RelatednessFloor.OFF
    relatedness_quantile: float = 0.1  # of the label's k-shot cosines: the floor

    def __post_init__(self) -> None:
        self.decoding = Decoding(self.decoding)
        self.stop_at = StopAt(self.stop_at)
        self.dedup = DedupKey(self.dedup)
        self.quantize = Quantize(self.quantize)
        for name in ("per_label", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.first_sentence_tokens is not None and self.first_sentence_tokens < 1:
            raise ValueError(f"first_sentence_tokens must be at least 1, got {self.first_sentence_tokens}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive (use decoding 'greedy' for argmax), got {self.temperature}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be positive, got {self.repetition_penalty}")
        if not 0 < self.copy_threshold <= 1:
            raise ValueError(f"copy_threshold must be in (0, 1], got {self.copy_threshold}")
        if self.max_attempts_per_label is not None and self.max_attempts_per_label < self.per_label:
            bound = self.max_attempts_per_label
            raise ValueError(f"max_attempts_per_label must be at least per_label ({self.per_label}), got {bound}")
        if self.top_up_rounds is not None and self.top_up_rounds < 0:
            raise ValueError(f"top_up_rounds must be non-negative, got {self.top_up_rounds}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.quantize is Quantize.INT8 and self.precision == "bf16":
            raise ValueError("quantize 'int8' computes in fp32 around its int8 layers; use precision 'auto' or 'fp32'")
        self._check_kshot_filters()

    def _check_kshot_filters(self) -> None:
        """The options of the filters against wrong labels and shortcuts."""
        self.consistency_filter = ConsistencyFilter(self.consistency_filter)
        self.relatedness_floor = RelatednessFloor(self.relatedness_floor)
        if not 0 < self.char_copy_threshold <= 1:
            raise ValueError(f"char_copy_threshold must be in (0, 1], got {self.char_copy_threshold}")
        if not 0 < self.judge_confidence < 1:
            raise ValueError(f"judge_confidence must be in (0, 1), got {self.judge_confidence}")
        if not 0 <= self.relatedness_quantile < 1:
            raise ValueError(f"relatedness_quantile must be in [0, 1), got {self.relatedness_quantile}")
        by_classifier = self.consistency_filter is ConsistencyFilter.CLASSIFIER
        if by_classifier and not self.consistency_classifier:
            raise ValueError("consistency_filter 'classifier' needs consistency_classifier, a stage-3 run's folder")
        if self.consistency_classifier and not by_classifier:
            raise ValueError(
                f"consistency_classifier is set but consistency_filter is {self.consistency_filter.value!r}; "
                "set consistency_filter to 'classifier'"
            )

    @property
    def needs_kshot_train(self) -> bool:
        """Whether a filter learns from the k-shot training split (the judge, the relatedness floor)."""
        return self.consistency_filter is ConsistencyFilter.JUDGE or self.relatedness_floor is RelatednessFloor.KSHOT

    @property
    def attempts_bound(self) -> int:
        """The most samples generated for one label: ``max_attempts_per_label`` or its default."""
        return self.max_attempts_per_label or ATTEMPTS_PER_SAMPLE * self.per_label

    def stops_at_sentence(self, pair: bool) -> bool:
        """Whether samples of a (sentence-pair, if ``pair``) task end at the end of their first sentence too."""
        return self.stop_at is StopAt.SENTENCE or (self.stop_at is StopAt.AUTO and pair)

    @property
    def greedy(self) -> bool:
        return self.decoding is Decoding.GREEDY

    def penalty_for(self, label: str, table: dict[str, float]) -> float:
        """The repetition penalty of ``label``: this config's, else the task table's, else 1.0 (none)."""
        return self.repetition_penalty if self.repetition_penalty is not None else table.get(label, 1.0)
