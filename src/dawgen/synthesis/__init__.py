"""Stage 2, label-conditioned generation: a synthetic dataset from a tuned generator, filtered, resumable,
sharded across processes; and a quality report of any synthetic set against the real few-shot data."""

from dawgen.synthesis.config import Decoding, DedupKey, GenerationConfig, Reject, StopAt
from dawgen.synthesis.decoding import GeneratedRow, PromptCache, SamplingSettings, generate_batch
from dawgen.synthesis.generate import GenerationOutcome, generate_synthetic
from dawgen.synthesis.quality import inspect_synthetic, quality_report
from dawgen.synthesis.stopping import SentenceEnds, StopReason

__all__ = [
    "Decoding", "DedupKey", "GeneratedRow", "GenerationConfig", "GenerationOutcome", "PromptCache", "Reject",
    "SamplingSettings", "SentenceEnds", "StopAt", "StopReason", "generate_batch", "generate_synthetic",
    "inspect_synthetic", "quality_report",
]  # fmt: skip
