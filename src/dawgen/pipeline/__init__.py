"""``dawgen run``: the three stages and the evaluation for every task, seed and method of one config."""

from dawgen.pipeline.config import RunConfig
from dawgen.pipeline.methods import Method, MethodKind, parse_method
from dawgen.pipeline.run import run_pipeline

__all__ = ["Method", "MethodKind", "RunConfig", "parse_method", "run_pipeline"]
