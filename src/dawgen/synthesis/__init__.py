"""Stage 2, label-conditioned generation: a synthetic dataset from a tuned generator, filtered (also by
filters that learn from the k-shot training split alone), resumable, sharded across processes; and a
quality report of any synthetic set against the real few-shot data."""

from dawgen.synthesis.config import (
    ConsistencyFilter,
    Decoding,
    DedupKey,
    GenerationConfig,
    Reject,
    RelatednessFloor,
    StopAt,
)  # fmt: skip
from dawgen.synthesis.decoding import GeneratedRow, PromptCache, SamplingSettings, generate_batch
from dawgen.synthesis.generate import GenerationOutcome, generate_synthetic
from dawgen.synthesis.quality import inspect_synthetic, quality_report
from dawgen.synthesis.stopping import SentenceEnds, StopReason

__all__ = [
    "ConsistencyFilter", "Decoding", "DedupKey", "GeneratedRow", "GenerationConfig", "GenerationOutcome", "PromptCache",
    "Reject", "RelatednessFloor", "SamplingSettings", "SentenceEnds", "StopAt", "StopReason", "generate_batch",
    "generate_synthetic", "inspect_synthetic", "quality_report",
]  # fmt: skip
