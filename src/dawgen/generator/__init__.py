"""Stage 1, generator tuning (DawGen, the paper's Algorithm 1): label prompts of a frozen causal LM,
tuned with a token-weighted LM loss, a discriminative outer objective and a distribution-aligned margin."""

from dawgen.generator.artifacts import TunedGenerator, load_generator, save_generator
from dawgen.generator.bilevel import (
    BatchScores,
    GeneratorObjective,
    LossParts,
    finite_difference_hypergradient,
    generator_step,
    lookahead,
)
from dawgen.generator.config import DiscForm, DistPairing, GeneratorConfig, Hypergradient, Variant
from dawgen.generator.prompts import LabelPrompts, TargetScores, label_texts, score_targets
from dawgen.generator.run import GeneratorOutcome, tune_generator
from dawgen.generator.sequences import GenBatch, GenSequence, SequenceBuilder, balanced_epoch, collate
from dawgen.generator.train import GeneratorTrainer
from dawgen.generator.weight_net import WeightNet, make_weight_net

__all__ = [
    "BatchScores", "DiscForm", "DistPairing", "GenBatch", "GenSequence", "GeneratorConfig", "GeneratorObjective",
    "GeneratorOutcome", "GeneratorTrainer", "Hypergradient", "LabelPrompts", "LossParts", "SequenceBuilder",
    "TargetScores", "TunedGenerator", "Variant", "WeightNet", "balanced_epoch", "collate",
    "finite_difference_hypergradient", "generator_step", "label_texts", "load_generator", "lookahead",
    "make_weight_net", "save_generator", "score_targets", "tune_generator",
]  # fmt: skip
